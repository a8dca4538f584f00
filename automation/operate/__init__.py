"""Operations on one stack at a time: preview, drift (with remediation), rollback, history, updates."""

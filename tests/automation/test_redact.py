"""Secrets never reach output: known secret values and credential-shaped strings are masked."""

from __future__ import annotations

from automation.redact import redact, redact_value


def test_known_secret_values_are_masked_longest_first() -> None:
    assert redact("password is s3cr3t-value, prefix s3cr3t", ["s3cr3t", "s3cr3t-value"]) == (
        "password is [secret], prefix [secret]"
    )


def test_short_secret_values_are_not_used_as_literals() -> None:
    # Masking a one-letter "secret" would shred every message.
    assert redact("a bad thing happened", ["a"]) == "a bad thing happened"


def test_credential_shapes_are_masked_without_being_declared() -> None:
    text = (
        "pulumi token pul-" + "0123456789abcdef" * 2 + "01234567 "
        "gh ghp_" + "A" * 36 + " aws AKIAABCDEFGHIJKLMNOP "
        "hook https://hooks.slack.com/services/T000/B000/XXXX "
        "url https://deploy:hunter2@example.com/x "
        "env PULUMI_CONFIG_PASSPHRASE=correct-horse api_key: 'abcd1234'"
    )
    masked = redact(text)
    for leaked in (
        "pul-0123",
        "ghp_AAAA",
        "AKIAABCD",
        "hooks.slack.com/services",
        "hunter2",
        "correct-horse",
        "abcd1234",
    ):
        assert leaked not in masked, leaked
    assert "https://deploy:[secret]@example.com/x" in masked
    assert "PULUMI_CONFIG_PASSPHRASE=[secret]" in masked


def test_ordinary_text_is_left_alone() -> None:
    text = "update failed: aws:lambda/function:Function prod-api: ResourceConflictException (version 12)"
    assert redact(text) == text


def test_nested_values_are_masked_everywhere() -> None:
    value = {"a": ["keep", "tok-XYZW-1234"], "b": {"c": "tok-XYZW-1234 inside"}, "n": 3}
    assert redact_value(value, ["tok-XYZW-1234"]) == {
        "a": ["keep", "[secret]"],
        "b": {"c": "[secret] inside"},
        "n": 3,
    }

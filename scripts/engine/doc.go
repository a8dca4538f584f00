// Package engine pins the Pulumi CLI that scripts/build-engine.sh builds: go.mod names the
// version, go.sum the hash of every module it is built from (checked by the go command).
package engine

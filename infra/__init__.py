"""The Stageline Pulumi program. Importing this package creates no resources."""

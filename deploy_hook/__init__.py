"""The test-traffic hook of blue/green and canary deploys (see README.md)."""

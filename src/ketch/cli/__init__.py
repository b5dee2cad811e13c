"""The ketch command line: thin over the APIs."""

"""
Shared values at the bottom of the package, importing nothing above them: `Call`, the queued call's one format,
`Outcome` and its reasons, the errors, defaults, JSON safety, redaction of secrets, and the retry policy.
"""

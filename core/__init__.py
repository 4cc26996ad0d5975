"""What every app shares and that knows no app: the domain error base, the
Content-Security-Policy (csp)."""

"""What every app shares and that knows no app: the domain error base."""

"""Bad-input catalogue: one small synthetic cohort, one broken thing per case."""

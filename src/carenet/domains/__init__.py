"""One package per business domain (scheduling, consultation, prescribing, ...)."""

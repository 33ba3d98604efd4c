"""Measuring completions: the classical fills (`baselines`), an independent
face check (`face_check`), the search on G's own samples
(`latent_recovery`)."""

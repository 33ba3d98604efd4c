"""Measuring completions: the classical fills (`baselines`), an independent
face check (`face_check`), is it still the same person (`identity`, dlib's
face recognition), the search on G's own samples (`latent_recovery`)."""

"""jaxinpaint: semantic image completion through an adversarial strategy."""

"""Array operators with no model: masked image gradients and window weights
(`image_ops`), the Poisson blend (`poisson`), the tables' metrics
(`metrics`)."""

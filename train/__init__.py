"""Training: the paper's two-stage recipe (installed as scgan_rt.train)."""

"""Local LipLT: certificates and Lipschitz constants valid on a ball around each sample."""

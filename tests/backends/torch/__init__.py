"""What only the PyTorch backend has (torch.compile, its module tree, the seed's PyTorch client)."""

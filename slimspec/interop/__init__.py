"""Bring models in and out: torchvision models and your own nn.Module (torch.fx) as specs; export."""

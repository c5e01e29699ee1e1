"""Bring models in: torchvision models and your own nn.Module (torch.fx) as specs + weights."""

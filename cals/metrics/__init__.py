"""Keypoint metrics: OKS AP/AR per group and pose family, PCK."""

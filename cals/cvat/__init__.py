"""CVAT access for the services, always through cvat-sdk."""

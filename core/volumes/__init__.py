"""BraTS volumes: case reading, views, tumour regions, the volume model, meshes and figures."""

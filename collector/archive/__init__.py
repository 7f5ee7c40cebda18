"""The archive in storage: create-only blobs and ETag-guarded JSON, every blob name, the state
blob, the source lease, and one window's rows split into per-day blobs. Imports only ``core``."""

"""The kubelet API of a node agent: container logs, exec and port-forward, served to the API
server over HTTPS (pkg/kubelet/server and pkg/kubelet/cri/streaming upstream)."""

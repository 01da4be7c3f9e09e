"""kube-proxy iptables mode: upstream layout, legacy iptables by default (see README.md)."""

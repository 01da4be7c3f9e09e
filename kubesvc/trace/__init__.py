"""`kubesvc trace`: one request made for real from a pod or node, and the path it took."""

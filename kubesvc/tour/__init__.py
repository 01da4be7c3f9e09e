"""`kubesvc demo`: the seed's notes walked claim by claim on a live cluster."""

"""nftables backend of the service proxy (the default mode): one table, flat layout."""

"""Wire protocols, one folder or module each (peers/identify now; Bitswap, DHT, pubsub next)."""

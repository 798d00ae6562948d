"""Block codecs (IPLD): what is inside a block and which blocks it links to."""

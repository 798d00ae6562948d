"""The HTTP layer on top of the services: the server and routes (in the daemon) and the client.

Nothing is imported here: a client command must not pay for the server's imports.
"""

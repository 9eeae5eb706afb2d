"""The API: the client and what its answers mean, the account, the key and base URL from
the environment, the wire forms that adapt, what first contact learned, when a video
link dies.
"""

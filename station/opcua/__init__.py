"""The OPC UA server for PLCs (optional extra ``opcua``; docs/plc.md is the PLC author's page).

- ``nodes``: the information model's node ids and value types (stable: string ids in the
  namespace :data:`nodes.NAMESPACE_URI`); pure data, no asyncua.
- ``security``: the trust folder of client certificates and the user manager (passwords,
  user certificates, anonymous; never a user token on an unencrypted channel).
- ``server``: :class:`server.OpcUaServer`, asyncua on its own thread and event loop, fed by
  plain functions (a ``trigger`` callable in, verdicts/status/flags pushed by the daemon), so
  that no client can stall a cycle.
"""

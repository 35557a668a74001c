"""Built-in checks, one module per problem; installed as `netdoctor.checks`."""

BUILTIN = [
    "softirq_drops",
    "nic_errors",
    "nic_saturation",
    "retransmits",
    "conntrack",
    "ephemeral_ports",
    "socket_states",
    "socket_buffers",
    "listen_queue",
]

"""The causal graph: which condition can explain which symptom.

Checks tag their findings with these names; the engine nests a symptom under a
present finding whose tag can reach it along these edges, so the root cause ranks
first. Keep the graph small and explicit: every edge is a mechanism an SRE would
recognise.
"""

from __future__ import annotations

CONNTRACK_FULL = "conntrack_full"  # table at or near nf_conntrack_max
CONNTRACK_DROPS = "conntrack_drops"  # drop / early_drop / insert_failed rising
IRQ_PINNED = "irq_pinned"  # a NIC's queue IRQs all land on one CPU, or one queue without RPS
SOFTIRQ_SATURATED = "softirq_saturated"  # one CPU busy in softirq
SOFTNET_DROPS = "softnet_drops"  # softnet_stat dropped / time_squeeze rising
BUDGET_SHORT = "budget_short"  # netdev_budget / netdev_max_backlog too small for the load
NIC_LINE_RATE = "nic_line_rate"  # an interface at its link speed
RING_OVERFLOW = "ring_overflow"  # rx_missed / fifo errors: the NIC ring is too small
NIC_DROPS = "nic_drops"  # interface rx/tx drops
NIC_ERRORS = "nic_errors"  # crc/frame/etc. errors on an interface
NIC_FLAPPING = "nic_flapping"  # carrier changes
TCP_RETRANSMITS = "tcp_retransmits"  # retransmit ratio high
TIMEWAIT_BUILDUP = "timewait_buildup"
CLOSEWAIT_BUILDUP = "closewait_buildup"
PORTS_EXHAUSTED = "ports_exhausted"  # ephemeral ports toward one destination
SOCKET_BUFFER_OVERFLOW = "socket_buffer_overflow"
LISTEN_OVERFLOW = "listen_overflow"

# cause -> symptoms it can produce
CAUSAL_EDGES: dict[str, tuple[str, ...]] = {
    CONNTRACK_FULL: (CONNTRACK_DROPS, TCP_RETRANSMITS),
    CONNTRACK_DROPS: (TCP_RETRANSMITS,),
    IRQ_PINNED: (SOFTIRQ_SATURATED, SOFTNET_DROPS),
    SOFTIRQ_SATURATED: (SOFTNET_DROPS,),
    BUDGET_SHORT: (SOFTNET_DROPS,),
    SOFTNET_DROPS: (TCP_RETRANSMITS, SOCKET_BUFFER_OVERFLOW),
    NIC_LINE_RATE: (NIC_DROPS, TCP_RETRANSMITS),
    RING_OVERFLOW: (NIC_DROPS,),
    NIC_DROPS: (TCP_RETRANSMITS,),
    NIC_ERRORS: (TCP_RETRANSMITS,),
    NIC_FLAPPING: (NIC_ERRORS, NIC_DROPS, TCP_RETRANSMITS),
    TIMEWAIT_BUILDUP: (PORTS_EXHAUSTED,),
    CLOSEWAIT_BUILDUP: (PORTS_EXHAUSTED,),
    LISTEN_OVERFLOW: (TCP_RETRANSMITS,),
}

/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * What the XDP redirector (redirect.bpf.c) and the Rust loader
 * (engine/src/io/bpf.rs) agree on: map key and value layouts, map sizes,
 * and the counter enum. The Rust side mirrors every struct and constant
 * here; `io::bpf::tests::layouts_match_c` compiles a probe against this
 * header (engine/build.rs) and checks sizes, offsets and values match.
 *
 * Byte order: addresses are in network order (as on the wire), ports and
 * everything else in host order.
 */
#ifndef SLUICE_SHARED_H
#define SLUICE_SHARED_H

#include <linux/types.h>

/* Map sizes. */
#define SLUICE_MAX_PORTS 256    /* config.ports (validate allows 250) */
#define SLUICE_MAX_QUEUES 64    /* rx queues per port with a socket */
#define SLUICE_XSK_ENTRIES (SLUICE_MAX_PORTS * SLUICE_MAX_QUEUES)
#define SLUICE_MAX_ADDRS 1024   /* node addresses + directed broadcasts */
#define SLUICE_MAX_L4PORTS 1024 /* node ports, failsafe entries */

/*
 * Masquerade ports in use: one bit per (slot, protocol, port), in an
 * mmapable array of 64-bit words that userspace writes without a syscall
 * (64-bit because array elements are 8-byte aligned: a 32-bit value would
 * leave holes in the mmap). A slot is a distinct masquerade address (config
 * order); the protocol index is below. Word index:
 * ((slot * PROTOS + proto) << 10) | (port >> 6); bit: port & 63.
 */
#define SLUICE_NAT_SLOTS 16
#define SLUICE_NAT_PROTOS 4
#define SLUICE_NAT_PROTO_TCP 0
#define SLUICE_NAT_PROTO_UDP 1
#define SLUICE_NAT_PROTO_SCTP 2
#define SLUICE_NAT_PROTO_ICMP 3 /* echo identifier (ICMP and ICMPv6) */
#define SLUICE_NAT_WORDS_PER_PROTO (65536 / 64)
#define SLUICE_NAT_WORDS (SLUICE_NAT_SLOTS * SLUICE_NAT_PROTOS * SLUICE_NAT_WORDS_PER_PROTO)

#define SLUICE_NO_NAT_SLOT 0xffffffffu

/* Address families in keys. */
#define SLUICE_AF_INET 4
#define SLUICE_AF_INET6 6

/* sluice_addr_val.flags */
#define SLUICE_ADDR_LOCAL 1u     /* a node address: hand to the kernel */
#define SLUICE_ADDR_BROADCAST 2u /* a directed broadcast: to the kernel */

/* Key of the node address map. IPv4 uses addr[0..4]; the rest is zero. */
struct sluice_addr_key {
	__u32 family; /* SLUICE_AF_INET or SLUICE_AF_INET6 */
	__u8 addr[16];
};

struct sluice_addr_val {
	__u32 flags;    /* SLUICE_ADDR_* */
	__u32 nat_slot; /* masquerade slot of this address, or SLUICE_NO_NAT_SLOT */
};

/* Key of the node-port and failsafe maps. */
struct sluice_l4_key {
	__u8 proto; /* IP protocol number: 6, 17, 132 */
	__u8 pad;
	__u16 port; /* host order */
};

/* The single entry of the config map. */
struct sluice_xdp_config {
	__u32 no_socket_action; /* XDP_PASS (open) or XDP_DROP (closed) */
	__u32 flags;            /* reserved, 0 */
};

/*
 * Per-CPU packet counters, indexed by this enum. Every frame the program
 * sees is counted once under SLUICE_XDP_RX and once under exactly one
 * outcome.
 */
enum sluice_xdp_counter {
	SLUICE_XDP_RX = 0,            /* every frame */
	SLUICE_XDP_PASS_NOT_IP,       /* ARP, LLDP, 3+ VLAN tags, ... */
	SLUICE_XDP_PASS_ND,           /* IPv6 neighbour discovery */
	SLUICE_XDP_PASS_LOCAL,        /* to a node address */
	SLUICE_XDP_PASS_BROADCAST,    /* limited or directed broadcast */
	SLUICE_XDP_PASS_MULTICAST,    /* 224/4, ff00::/8 */
	SLUICE_XDP_PASS_LINK_LOCAL,   /* fe80::/10 */
	SLUICE_XDP_PASS_FAILSAFE,     /* failsafe protocol/port to a node address */
	SLUICE_XDP_REDIRECT,          /* to the AF_XDP socket (forwarding) */
	SLUICE_XDP_REDIRECT_NODE_PORT,/* node address, service node port */
	SLUICE_XDP_REDIRECT_NAT,      /* node address, masquerade port in use */
	SLUICE_XDP_NO_SOCKET_PASS,    /* no socket on the queue, fail open */
	SLUICE_XDP_NO_SOCKET_DROP,    /* no socket on the queue, fail closed */
	SLUICE_XDP_PASS_UNKNOWN_PORT, /* interface not in the port map */
	SLUICE_XDP_COUNTERS,          /* number of counters */
};

#endif /* SLUICE_SHARED_H */

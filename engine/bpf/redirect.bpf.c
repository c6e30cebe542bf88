// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * sluice's XDP redirector.
 *
 * Decides, per frame, between the kernel (XDP_PASS) and sluice's AF_XDP
 * socket for the frame's (port, rx queue). It mirrors the pipeline's own
 * "local" decision (engine/src/pipeline/stages/route.rs and the local routes
 * of engine/src/tables/mod.rs) so that frames sluice would hand to the
 * kernel never reach it:
 *
 *   non-IP (ARP, LLDP, ...), three or more VLAN tags      -> kernel
 *   IPv6 neighbour discovery (ICMPv6 133..137)             -> kernel
 *   IPv4 255.255.255.255, directed broadcasts, 224/4       -> kernel
 *   IPv6 ff00::/8, fe80::/10                               -> kernel
 *   a node address:
 *     a failsafe protocol/port (default TCP 22)            -> kernel
 *     a service node port                                  -> sluice
 *     a masquerade port in use (replies to SNATed flows,
 *       ICMP errors quoting them, echo replies)            -> sluice
 *     anything else (and fragments)                        -> kernel
 *   everything else (forwarded traffic, malformed frames)  -> sluice
 *
 * With no socket bound on the queue: xdp.fail_mode open -> XDP_PASS,
 * closed -> XDP_DROP. Per-CPU counters count every outcome.
 *
 * Up to two VLAN tags (802.1Q, 802.1ad, 0x9100) are looked through, like
 * engine/src/wire/parse.rs.
 *
 * Loaded as "xdp.frags" (multi-buffer aware): a frame bigger than a page
 * (jumbo MTUs) arrives in several buffers; the program reads only the
 * headers, which are in the first, and native XDP stays available on
 * devices whose MTU needs several buffers (veth refuses a program without
 * the flag there).
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "shared.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* AF_XDP sockets by port * SLUICE_MAX_QUEUES + rx queue. */
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, SLUICE_XSK_ENTRIES);
	__type(key, __u32);
	__type(value, __u32);
} sl_xsks SEC(".maps");

/* ifindex -> port id (config order). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLUICE_MAX_PORTS);
	__type(key, __u32);
	__type(value, __u32);
} sl_ports SEC(".maps");

/* Node addresses and directed broadcasts (config ports[].addresses). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLUICE_MAX_ADDRS);
	__type(key, struct sluice_addr_key);
	__type(value, struct sluice_addr_val);
} sl_addrs SEC(".maps");

/* Service node ports (config services[].node_port). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLUICE_MAX_L4PORTS);
	__type(key, struct sluice_l4_key);
	__type(value, __u32);
} sl_nodeports SEC(".maps");

/* Failsafe protocol/ports (config xdp.failsafe). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, SLUICE_MAX_L4PORTS);
	__type(key, struct sluice_l4_key);
	__type(value, __u32);
} sl_failsafe SEC(".maps");

/* Masquerade ports in use: a bitmap userspace writes through mmap. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, SLUICE_NAT_WORDS);
	__type(key, __u32);
	__type(value, __u64);
} sl_nat SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct sluice_xdp_config);
} sl_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SLUICE_XDP_COUNTERS);
	__type(key, __u32);
	__type(value, __u64);
} sl_counters SEC(".maps");

#define ETH_P_8021Q_ 0x8100
#define ETH_P_8021AD_ 0x88A8
#define ETH_P_QINQ_OLD_ 0x9100
#define IPPROTO_ICMPV6_ 58
#define IPPROTO_SCTP_ 132
#define MAX_L3_OFFSET 512

/* Outcome of the classification, before the socket lookup. */
enum verdict {
	V_PASS,          /* to the kernel (already counted) */
	V_REDIRECT,      /* to sluice: forwarded traffic */
	V_NODE_PORT,     /* to sluice: a node address, service node port */
	V_NAT,           /* to sluice: a node address, masquerade port in use */
};

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&sl_counters, &idx);
	if (v)
		*v += 1;
}

static __always_inline int vlan_proto(__u16 p)
{
	return p == bpf_htons(ETH_P_8021Q_) || p == bpf_htons(ETH_P_8021AD_) ||
	       p == bpf_htons(ETH_P_QINQ_OLD_);
}

/* The masquerade bitmap index of an IP protocol, or -1. */
static __always_inline int nat_proto(__u8 proto)
{
	switch (proto) {
	case IPPROTO_TCP:
		return SLUICE_NAT_PROTO_TCP;
	case IPPROTO_UDP:
		return SLUICE_NAT_PROTO_UDP;
	case IPPROTO_SCTP_:
		return SLUICE_NAT_PROTO_SCTP;
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6_:
		return SLUICE_NAT_PROTO_ICMP;
	}
	return -1;
}

static __always_inline int nat_in_use(__u32 slot, int proto, __u16 port)
{
	if (slot >= SLUICE_NAT_SLOTS || proto < 0)
		return 0;
	__u32 idx = ((slot * SLUICE_NAT_PROTOS + (__u32)proto) << 10) | (port >> 6);
	__u64 *w = bpf_map_lookup_elem(&sl_nat, &idx);
	return w && (*w >> (port & 63)) & 1;
}

static __always_inline int has_ports(__u8 proto)
{
	return proto == IPPROTO_TCP || proto == IPPROTO_UDP || proto == IPPROTO_SCTP_;
}

/*
 * Traffic to a node address: l4 points at the transport header of a
 * non-fragment. Decides between the kernel and sluice and counts it.
 */
static __always_inline enum verdict to_node(void *l4, void *end, __u8 proto, int v6,
					    const struct sluice_addr_val *a)
{
	if (has_ports(proto)) {
		__u16 *ports = l4;
		if ((void *)(ports + 2) > end) {
			count(SLUICE_XDP_PASS_LOCAL);
			return V_PASS;
		}
		struct sluice_l4_key k = { .proto = proto, .pad = 0, .port = bpf_ntohs(ports[1]) };
		if (bpf_map_lookup_elem(&sl_failsafe, &k)) {
			count(SLUICE_XDP_PASS_FAILSAFE);
			return V_PASS;
		}
		if (bpf_map_lookup_elem(&sl_nodeports, &k))
			return V_NODE_PORT;
		if (nat_in_use(a->nat_slot, nat_proto(proto), k.port))
			return V_NAT;
		count(SLUICE_XDP_PASS_LOCAL);
		return V_PASS;
	}
	if (proto == (v6 ? IPPROTO_ICMPV6_ : IPPROTO_ICMP) && a->nat_slot != SLUICE_NO_NAT_SLOT) {
		__u8 *icmp = l4;
		if ((void *)(icmp + 8) > end)
			goto local;
		__u8 type = icmp[0];
		__u8 echo_reply = v6 ? 129 : 0;
		int error = v6 ? (type >= 1 && type <= 4) : (type == 3 || type == 11 || type == 12);
		if (type == echo_reply) {
			__u16 id = bpf_ntohs(*(__u16 *)(icmp + 4));
			if (nat_in_use(a->nat_slot, SLUICE_NAT_PROTO_ICMP, id))
				return V_NAT;
		} else if (error) {
			/* The quoted packet is one sluice sent from the masquerade
			 * address: its source port (or echo id) is the NAT port. */
			__u8 *inner = icmp + 8;
			__u8 iproto;
			__u8 *il4;
			if (!v6) {
				if ((void *)(inner + 20) > end)
					goto local;
				__u32 ihl = (inner[0] & 0x0f) * 4;
				if (ihl < 20)
					goto local;
				iproto = inner[9];
				il4 = inner + ihl;
			} else {
				if ((void *)(inner + 40) > end)
					goto local;
				iproto = inner[6];
				il4 = inner + 40;
			}
			if ((void *)(il4 + 8) > end)
				goto local;
			__u16 iport;
			if (has_ports(iproto)) {
				iport = bpf_ntohs(*(__u16 *)il4);
			} else if ((iproto == IPPROTO_ICMP && il4[0] == 8) ||
				   (iproto == IPPROTO_ICMPV6_ && il4[0] == 128)) {
				iport = bpf_ntohs(*(__u16 *)(il4 + 4));
			} else {
				goto local;
			}
			if (nat_in_use(a->nat_slot, nat_proto(iproto), iport))
				return V_NAT;
		}
	}
local:
	count(SLUICE_XDP_PASS_LOCAL);
	return V_PASS;
}

static __always_inline enum verdict classify_v4(void *data, void *end, __u32 off)
{
	struct iphdr *ip = data + off;
	if ((void *)(ip + 1) > end)
		return V_REDIRECT; /* malformed: the pipeline drops and counts it */
	__u32 dst = bpf_ntohl(ip->daddr);
	if (dst == 0xffffffff) {
		count(SLUICE_XDP_PASS_BROADCAST);
		return V_PASS;
	}
	if ((dst >> 28) == 0xe) {
		count(SLUICE_XDP_PASS_MULTICAST);
		return V_PASS;
	}
	struct sluice_addr_key key = { .family = SLUICE_AF_INET };
	__builtin_memcpy(key.addr, &ip->daddr, 4);
	struct sluice_addr_val *a = bpf_map_lookup_elem(&sl_addrs, &key);
	if (!a)
		return V_REDIRECT;
	if (a->flags & SLUICE_ADDR_BROADCAST) {
		count(SLUICE_XDP_PASS_BROADCAST);
		return V_PASS;
	}
	__u32 ihl = ip->ihl * 4;
	if (ihl < 20)
		return V_REDIRECT;
	if (ip->frag_off & bpf_htons(0x3fff)) {
		/* A fragment to the node: the kernel reassembles it. */
		count(SLUICE_XDP_PASS_LOCAL);
		return V_PASS;
	}
	return to_node((void *)ip + ihl, end, ip->protocol, 0, a);
}

static __always_inline int is_ext_header(__u8 nh)
{
	return nh == 0 || nh == 43 || nh == 60 || nh == 51 || nh == 44 || nh == 135 ||
	       nh == 139 || nh == 140 || nh == 253 || nh == 254;
}

static __always_inline enum verdict classify_v6(void *data, void *end, __u32 off)
{
	struct ipv6hdr *ip = data + off;
	if ((void *)(ip + 1) > end)
		return V_REDIRECT;
	__u8 *d = ip->daddr.s6_addr;
	/* Walk extension headers to the transport (as the parser does). */
	__u8 nh = ip->nexthdr;
	__u32 l4 = off + 40;
	int fragment = 0;
#pragma unroll
	for (int i = 0; i < 6; i++) {
		if (!is_ext_header(nh))
			break;
		if (l4 > MAX_L3_OFFSET)
			return V_REDIRECT;
		__u8 *e = data + l4;
		if ((void *)(e + 8) > end)
			return V_REDIRECT;
		__u32 len;
		if (nh == 44) {
			fragment = 1;
			len = 8;
		} else if (nh == 51) {
			len = ((__u32)e[1] + 2) * 4;
		} else {
			len = ((__u32)e[1] + 1) * 8;
		}
		nh = e[0];
		l4 += len;
	}
	if (l4 > MAX_L3_OFFSET)
		return V_REDIRECT;
	if (nh == IPPROTO_ICMPV6_ && !fragment) {
		__u8 *icmp = data + l4;
		if ((void *)(icmp + 1) <= end && icmp[0] >= 133 && icmp[0] <= 137) {
			count(SLUICE_XDP_PASS_ND);
			return V_PASS;
		}
	}
	if (d[0] == 0xff) {
		count(SLUICE_XDP_PASS_MULTICAST);
		return V_PASS;
	}
	if (d[0] == 0xfe && (d[1] & 0xc0) == 0x80) {
		count(SLUICE_XDP_PASS_LINK_LOCAL);
		return V_PASS;
	}
	struct sluice_addr_key key = { .family = SLUICE_AF_INET6 };
	__builtin_memcpy(key.addr, d, 16);
	struct sluice_addr_val *a = bpf_map_lookup_elem(&sl_addrs, &key);
	if (!a)
		return V_REDIRECT;
	if (fragment) {
		count(SLUICE_XDP_PASS_LOCAL);
		return V_PASS;
	}
	return to_node(data + l4, end, nh, 1, a);
}

SEC("xdp.frags")
int sluice_redirect(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	enum verdict v = V_REDIRECT;

	count(SLUICE_XDP_RX);

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		goto redirect;
	__u16 proto = eth->h_proto;
	__u32 off = sizeof(*eth);
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (!vlan_proto(proto))
			break;
		__u16 *tag = data + off;
		if ((void *)(tag + 2) > end)
			goto redirect;
		proto = tag[1];
		off += 4;
	}
	if (proto == bpf_htons(ETH_P_IP)) {
		v = classify_v4(data, end, off);
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		v = classify_v6(data, end, off);
	} else {
		/* Non-IP, or a third VLAN tag. */
		count(SLUICE_XDP_PASS_NOT_IP);
		return XDP_PASS;
	}
	if (v == V_PASS)
		return XDP_PASS;

redirect:;
	__u32 ifindex = ctx->ingress_ifindex;
	__u32 *port = bpf_map_lookup_elem(&sl_ports, &ifindex);
	if (!port) {
		count(SLUICE_XDP_PASS_UNKNOWN_PORT);
		return XDP_PASS;
	}
	__u32 zero = 0;
	struct sluice_xdp_config *cfg = bpf_map_lookup_elem(&sl_config, &zero);
	__u32 fail = cfg && cfg->no_socket_action == XDP_DROP ? XDP_DROP : XDP_PASS;
	__u32 q = ctx->rx_queue_index;
	if (q < SLUICE_MAX_QUEUES && *port < SLUICE_MAX_PORTS) {
		__u32 key = *port * SLUICE_MAX_QUEUES + q;
		if (bpf_map_lookup_elem(&sl_xsks, &key)) {
			count(v == V_NODE_PORT ? SLUICE_XDP_REDIRECT_NODE_PORT :
			      v == V_NAT       ? SLUICE_XDP_REDIRECT_NAT :
						 SLUICE_XDP_REDIRECT);
			return bpf_redirect_map(&sl_xsks, key, fail);
		}
	}
	count(fail == XDP_DROP ? SLUICE_XDP_NO_SOCKET_DROP : SLUICE_XDP_NO_SOCKET_PASS);
	return fail;
}

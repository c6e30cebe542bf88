// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * The ceiling of the peer comparison (bench/peers, `peer-gen xdp-fwd`): an
 * in-kernel forwarder that does no processing. A frame received on a port
 * gets the MACs of its way out (source: the egress port, destination: the
 * next hop), as every other forwarder of the comparison writes them, and is
 * redirected through a DEVMAP to the other port. Not part of the data plane.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Ingress ifindex -> egress ifindex (and no chained program). */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val);
} fwd_ports SEC(".maps");

/* Ingress ifindex -> destination MAC then source MAC of the way out. */
struct fwd_macs {
	__u8 dst[ETH_ALEN];
	__u8 src[ETH_ALEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, struct fwd_macs);
} fwd_macs SEC(".maps");

SEC("xdp")
int sluice_xdp_fwd(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 in = ctx->ingress_ifindex;
	struct fwd_macs *m = bpf_map_lookup_elem(&fwd_macs, &in);
	if (!m || data + sizeof(struct fwd_macs) > end)
		return XDP_PASS;
	__builtin_memcpy(data, m, sizeof(*m));
	return bpf_redirect_map(&fwd_ports, in, XDP_DROP);
}

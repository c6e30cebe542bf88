// SPDX-License-Identifier: (GPL-2.0 OR BSD-2-Clause)
/*
 * Traffic generator for benchmarks (bench/peers): run with
 * BPF_PROG_TEST_RUN in live-frames mode over a template UDP frame, it gives
 * each copy a source port from a rotating counter (spreading `flows` flows)
 * and redirects it out of `target_ifindex`. Not part of the data plane.
 */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

struct gen_config {
	__u32 target_ifindex;
	__u32 flows;     /* source ports base_port .. base_port + flows - 1 */
	__u32 base_port;
	__u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct gen_config);
} gen_cfg SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} gen_count SEC(".maps");

SEC("xdp")
int sluice_trafficgen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 zero = 0;
	struct gen_config *cfg = bpf_map_lookup_elem(&gen_cfg, &zero);
	__u64 *n = bpf_map_lookup_elem(&gen_count, &zero);
	if (!cfg || !n)
		return XDP_ABORTED;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct udphdr *udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > end)
		return XDP_ABORTED;
	__u32 flows = cfg->flows ? cfg->flows : 1;
	udp->source = bpf_htons(cfg->base_port + (__u32)(*n % flows));
	udp->check = 0; /* optional for IPv4 */
	*n += 1;
	return bpf_redirect(cfg->target_ifindex, 0);
}

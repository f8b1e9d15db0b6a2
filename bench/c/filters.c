/* Hand-written C equivalents of the example filters (examples/ssh_filter.lua,
 * port_blocklist.lua, icmp_guard.lua, dns_blocklist.lua), as XDP programs.
 *
 * Self-contained (no kernel headers, no maps, no relocations): bench/run.py compiles this
 * file with `clang-19 -O2 -target bpf -mcpu=v4`, takes each program's bytes from the
 * section of its name and loads them with BPF_PROG_LOAD.  Every program does the parse
 * luabpf's `hdr`/`pld` do (compiler/headers.py), but for IPv6 extension headers (not walked here;
 * the benchmark's frames have none): Ethernet, up to two VLAN tags (802.1Q,
 * 802.1ad), IPv4 (options; a total length cuts the payload, Ethernet padding is not
 * payload; fragments after the first carry no L4 header) or IPv6,
 * then TCP (with options), UDP or ICMP/ICMPv6; a header cut short is absent, and the
 * payload is the bytes after the last header parsed.  Each filter reads only what its Lua
 * script reads, so the parse is done once, inlined, and clang drops what a filter ignores.
 *
 * ICMP guard: MAX_PING and MIN_TTL are globals of the Lua script (a map the running filter
 * reads, changeable live); here they are compile-time constants (C without maps).
 */
typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long u64;
typedef long s64;

#define SEC(name) __attribute__((section(name), used))
#define INLINE static inline __attribute__((always_inline))

struct xdp_md { u32 data, data_end, data_meta, ingress_ifindex, rx_queue_index, egress_ifindex; };

#define XDP_DROP 1
#define XDP_PASS 2
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
/* XDP frames fit in a page: every offset below is under 4096, so masking an offset that
 * was already checked against the packet's length changes nothing; the mask tells the
 * verifier the offset is small enough for packet-pointer arithmetic. */
#define OFF(x) ((x) & 0x3fff)

INLINE u16 be16(const u8 *p) { return (u16)(p[0] << 8 | p[1]); }

struct hdr {
	s64 ip, ip6, tcp, udp, icmp;   /* header offsets, -1 when absent */
	s64 pld, pld_end;              /* the payload: [pld, pld_end) */
};

INLINE void l4(struct hdr *h, const u8 *data, const u8 *dend, s64 off, s64 end, u8 proto,
	       u8 icmp_proto)
{
	if (proto == 6) {
		if (off + 20 > end) return;
		const u8 *t = data + OFF(off);
		if (t + 20 > dend) return;
		s64 doff = (t[12] >> 4) << 2;
		if (doff < 20 || off + doff > end) return;
		h->tcp = off; h->pld = off + doff; h->pld_end = end;
	} else if (proto == 17) {
		if (off + 8 > end) return;
		h->udp = off; h->pld = off + 8; h->pld_end = end;
	} else if (proto == icmp_proto) {
		if (off + 8 > end) return;
		h->icmp = off; h->pld = off + 8; h->pld_end = end;
	}
}

INLINE void parse(struct xdp_md *ctx, struct hdr *h)
{
	const u8 *data = (const u8 *)(long)ctx->data, *dend = (const u8 *)(long)ctx->data_end;
	s64 size = dend - data;
	h->ip = h->ip6 = h->tcp = h->udp = h->icmp = -1;
	h->pld = 0; h->pld_end = size;
	if (data + 14 > dend) return;
	u16 etype = be16(data + 12);
	s64 off = 14;
	h->pld = off;
	for (int i = 0; i < 2; i++) {                   /* up to two VLAN tags */
		if (etype != ETH_P_8021Q && etype != ETH_P_8021AD) break;
		const u8 *q = data + off;
		if (q + 4 > dend) return;
		etype = be16(q + 2);
		off += 4;
		h->pld = off;
	}
	if (etype == ETH_P_IP) {
		const u8 *p = data + off;
		if (p + 20 > dend) return;
		if (p[0] >> 4 != 4) return;
		s64 ihl = (p[0] & 15) << 2;
		if (ihl < 20) return;
		s64 total = be16(p + 2), l4off = off + ihl;
		if (total < ihl) return;
		s64 end = off + total;
		if (end > size) end = size;
		if (l4off > end) return;
		h->ip = off; h->pld = l4off; h->pld_end = end;
		if (be16(p + 6) & 0x1fff) return;       /* not the first fragment */
		l4(h, data, dend, l4off, end, p[9], 1);
	} else if (etype == ETH_P_IPV6) {
		const u8 *p = data + off;
		if (p + 40 > dend) return;
		if (p[0] >> 4 != 6) return;
		s64 l4off = off + 40, end = l4off + be16(p + 4);
		if (end > size) end = size;
		h->ip6 = off; h->pld = l4off; h->pld_end = end;
		l4(h, data, dend, l4off, end, p[6], 58);
	}
}

/* ---- examples/port_blocklist.lua ---------------------------------------------------- */

INLINE int blocked(u16 port)
{
	return port == 23 || port == 135 || port == 139 || port == 445 || port == 3389;
}

SEC("xdp/port_blocklist") int port_blocklist(struct xdp_md *ctx)
{
	const u8 *data = (const u8 *)(long)ctx->data, *dend = (const u8 *)(long)ctx->data_end;
	struct hdr h;
	parse(ctx, &h);
	if (h.tcp >= 0) {
		const u8 *t = data + OFF(h.tcp);
		if (t + 4 <= dend && blocked(be16(t + 2))) return XDP_DROP;
	}
	if (h.udp >= 0) {
		const u8 *u = data + OFF(h.udp);
		if (u + 4 <= dend && blocked(be16(u + 2))) return XDP_DROP;
	}
	return XDP_PASS;
}

/* ---- examples/icmp_guard.lua --------------------------------------------------------- */

#define MAX_PING 64
#define MIN_TTL 2

SEC("xdp/icmp_guard") int icmp_guard(struct xdp_md *ctx)
{
	const u8 *data = (const u8 *)(long)ctx->data, *dend = (const u8 *)(long)ctx->data_end;
	struct hdr h;
	parse(ctx, &h);
	if (h.icmp < 0) return XDP_PASS;
	const u8 *c = data + OFF(h.icmp);
	if (c + 1 > dend) return XDP_PASS;
	if ((c[0] == 8 || c[0] == 128) && h.pld_end - h.pld > MAX_PING) return XDP_DROP;
	if (h.ip >= 0) {
		const u8 *ip = data + OFF(h.ip);
		if (ip + 9 <= dend && ip[8] < MIN_TTL) return XDP_DROP;
	}
	return XDP_PASS;
}

/* ---- examples/dns_blocklist.lua ------------------------------------------------------ */

SEC("xdp/dns_blocklist") int dns_blocklist(struct xdp_md *ctx)
{
	static const u8 blocked_name[13] = "\7example\3com";     /* + the final zero */
	const u8 *data = (const u8 *)(long)ctx->data, *dend = (const u8 *)(long)ctx->data_end;
	struct hdr h;
	parse(ctx, &h);
	if (h.udp < 0) return XDP_PASS;
	const u8 *u = data + OFF(h.udp);
	if (u + 4 > dend || be16(u + 2) != 53) return XDP_PASS;
	/* the header fields and the question name lie inside the payload's first 25 bytes;
	 * a field past the payload is nil in Lua, and nil == 0 is false: the packet passes */
	if (h.pld_end - h.pld < 25) return XDP_PASS;
	const u8 *d = data + OFF(h.pld);
	if (d + 25 > dend) return XDP_PASS;
	if (d[2] & 0x80) return XDP_PASS;                  /* qr */
	if ((d[2] >> 3) & 15) return XDP_PASS;             /* opcode */
	if (be16(d + 4) != 1) return XDP_PASS;             /* qdcount */
	for (int i = 0; i < 12; i++)
		if (d[12 + i] != (u8)blocked_name[i]) return XDP_PASS;
	if (d[24] != 0) return XDP_PASS;
	return XDP_DROP;
}

/* ---- examples/ssh_filter.lua ----------------------------------------------------------
 * str:match('SSH%-[^-%G]+%-([^-%G]+)') == 'OpenSSH_6.4' on the payload's first 255 bytes.
 * In the set [^-%G], '-' is a literal and %G the complement of %g: the set is the
 * printable bytes 0x21..0x7e except '-' (call them C).  '-' is not in C, so the first C+
 * can give nothing back: from a start s where "SSH-" occurs, the match needs a run of C
 * bytes, a '-', and at least one C byte, and captures the whole run of C bytes after that
 * '-'.  Lua tries start positions in order; when the attempt from the earliest "SSH-"
 * fails, no start inside it can succeed ("SSH-" cannot overlap itself, and a start inside
 * the first run would need its own '-' where the attempt failed), so one pass suffices:
 *   st 0..3: how much of "SSH-" ends here (KMP); 4: "SSH-" seen, a C byte must follow;
 *   5: in the first run of C bytes; 6: after its '-', a C byte must follow.
 * The capture starts at that C byte: the packet drops iff it is "OpenSSH_6.4" followed by
 * a byte outside C or by the end of the subject. */

#define TLEN 11
INLINE int in_c(u8 c) { return c > 0x20 && c < 0x7f && c != '-'; }

SEC("xdp/ssh_filter") int ssh_filter(struct xdp_md *ctx)
{
	const u8 *data = (const u8 *)(long)ctx->data, *dend = (const u8 *)(long)ctx->data_end;
	struct hdr h;
	parse(ctx, &h);
	/* A zero the verifier cannot know: the frame's length minus itself, hidden from clang
	 * by an empty asm.  Added to the payload's place and length, it makes the ~20 ways
	 * through the parse one state at the loop; added to the automaton's state at the top
	 * of every iteration, it keeps the verifier from following each value of `st`
	 * through 255 iterations. */
	s64 len = dend - data, len2 = len;
	asm volatile("" : "+r"(len2));
	s64 zero = len - len2;
	s64 n = h.pld_end - h.pld + zero;
	if (n > 255) n = 255;
	const u8 *s = data + OFF(h.pld + zero);
	s64 st = 0;
	int j;
	for (j = 0; j < 255; j++) {
		if (j >= n) return XDP_PASS;
		const u8 *q = s + j;
		if (q + 1 > dend) return XDP_PASS;
		u8 c = *q;
		st += zero;
		if (st < 4) {
			if (c == 'S') st = (st == 1 || st == 2) ? 2 : 1;
			else if (c == 'H' && st == 2) st = 3;
			else if (c == '-' && st == 3) st = 4;
			else st = 0;
		} else if (st == 4) {
			st = in_c(c) ? 5 : 0;
		} else if (st == 5) {
			st = c == '-' ? 6 : in_c(c) ? 5 : 0;
		} else {
			if (in_c(c)) break;               /* the capture starts at j */
			st = 0;
		}
	}
	if (j >= 255) return XDP_PASS;
	/* the capture [j, end of its run) == "OpenSSH_6.4" */
	if (n - j < TLEN) return XDP_PASS;
	const u8 *cap = s + j;
	if (cap + TLEN > dend) return XDP_PASS;
	if (cap[0] != 'O' || cap[1] != 'p' || cap[2] != 'e' || cap[3] != 'n' || cap[4] != 'S' ||
	    cap[5] != 'S' || cap[6] != 'H' || cap[7] != '_' || cap[8] != '6' || cap[9] != '.' ||
	    cap[10] != '4')
		return XDP_PASS;
	if (n - j == TLEN) return XDP_DROP;
	if (cap + TLEN + 1 > dend) return XDP_PASS;
	return in_c(cap[TLEN]) ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";

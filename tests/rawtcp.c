/* The attacker of the loopback-reachability tests: a TCP client that builds its own IPv4 packets and sends them
 * as link-layer frames (AF_PACKET, all CAP_NET_RAW allows) to a given MAC, so they reach the host addressed to
 * 127.0.0.1 instead of the sender's own lo. Linked statically to run inside the busybox image.
 *
 *   rawtcp IFNAME DEST_MAC DEST_IP PORT MESSAGE
 *
 * Handshakes with DEST_IP:PORT, sends MESSAGE and FIN. Prints "connected" (exit 0), "reset" (exit 2) or
 * "no answer" (exit 1, after 3 s). Our own kernel never sees the handshake: it drops the answer from 127.0.0.1
 * as a martian before its TCP could reset it, but the packet socket still receives a copy. */
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static unsigned short checksum(const void *data, size_t len, unsigned long sum) {
    const unsigned char *p = data;
    for (; len > 1; p += 2, len -= 2)
        sum += (p[0] << 8) | p[1];
    if (len)
        sum += p[0] << 8;
    while (sum >> 16)
        sum = (sum & 0xffff) + (sum >> 16);
    return htons(~sum & 0xffff);
}

struct seg {
    struct iphdr ip;
    struct tcphdr tcp;
    char data[256];
};

static size_t build(struct seg *s, in_addr_t src, in_addr_t dst, int sport, int dport, unsigned seq, unsigned ack,
                    int flags, const char *data) {
    size_t dlen = data ? strlen(data) : 0;
    memset(s, 0, sizeof *s);
    memcpy(s->data, data ? data : "", dlen);
    s->tcp.source = htons(sport);
    s->tcp.dest = htons(dport);
    s->tcp.seq = htonl(seq);
    s->tcp.ack_seq = htonl(ack);
    s->tcp.doff = 5;
    s->tcp.syn = !!(flags & TH_SYN);
    s->tcp.ack = !!(flags & TH_ACK);
    s->tcp.psh = !!(flags & TH_PUSH);
    s->tcp.fin = !!(flags & TH_FIN);
    s->tcp.window = htons(65535);
    size_t tlen = sizeof s->tcp + dlen;
    struct { in_addr_t s, d; unsigned char z, p; unsigned short l; } pseudo = {src, dst, 0, IPPROTO_TCP, htons(tlen)};
    unsigned long sum = 0;
    const unsigned char *pp = (const void *)&pseudo;
    for (size_t i = 0; i < sizeof pseudo; i += 2)
        sum += (pp[i] << 8) | pp[i + 1];
    s->tcp.check = checksum(&s->tcp, tlen, sum);
    s->ip.version = 4;
    s->ip.ihl = 5;
    s->ip.ttl = 64;
    s->ip.protocol = IPPROTO_TCP;
    s->ip.saddr = src;
    s->ip.daddr = dst;
    s->ip.tot_len = htons(sizeof s->ip + tlen);
    s->ip.check = checksum(&s->ip, sizeof s->ip, 0);
    return sizeof s->ip + tlen;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: rawtcp IFNAME DEST_MAC DEST_IP PORT MESSAGE\n");
        return 64;
    }
    int fd = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_IP));
    if (fd < 0) {
        perror("socket");
        return 65;
    }
    struct ifreq ifr = {0};
    strncpy(ifr.ifr_name, argv[1], IFNAMSIZ - 1);
    if (ioctl(fd, SIOCGIFADDR, &ifr) < 0) {
        perror("SIOCGIFADDR");
        return 65;
    }
    in_addr_t src = ((struct sockaddr_in *)&ifr.ifr_addr)->sin_addr.s_addr;
    struct sockaddr_ll ll = {.sll_family = AF_PACKET, .sll_protocol = htons(ETH_P_IP), .sll_halen = 6,
                             .sll_ifindex = if_nametoindex(argv[1])};
    unsigned m[6];
    if (sscanf(argv[2], "%x:%x:%x:%x:%x:%x", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6) {
        fprintf(stderr, "bad MAC %s\n", argv[2]);
        return 64;
    }
    for (int i = 0; i < 6; i++)
        ll.sll_addr[i] = m[i];
    if (bind(fd, (struct sockaddr *)&ll, sizeof ll) < 0) {
        perror("bind");
        return 65;
    }
    in_addr_t dst = inet_addr(argv[3]);
    int dport = atoi(argv[4]);
    srand(time(NULL) ^ getpid());
    int sport = 20000 + rand() % 40000;
    unsigned iss = rand();
    struct seg s;
    size_t n = build(&s, src, dst, sport, dport, iss, 0, TH_SYN, NULL);
    if (sendto(fd, &s, n, 0, (struct sockaddr *)&ll, sizeof ll) < 0) {
        perror("sendto");
        return 65;
    }
    struct timeval tv = {.tv_sec = 0, .tv_usec = 200000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    time_t deadline = time(NULL) + 3;
    unsigned char buf[2048];
    while (time(NULL) < deadline) {
        ssize_t got = recv(fd, buf, sizeof buf, 0);
        if (got < (ssize_t)(sizeof(struct iphdr) + sizeof(struct tcphdr)))
            continue;
        struct iphdr *ip = (void *)buf;
        struct tcphdr *tcp = (void *)(buf + ip->ihl * 4);
        if (ip->protocol != IPPROTO_TCP || ip->saddr != dst || ntohs(tcp->source) != dport || ntohs(tcp->dest) != sport)
            continue;
        if (tcp->rst) {
            puts("reset");
            return 2;
        }
        if (tcp->syn && tcp->ack && ntohl(tcp->ack_seq) == iss + 1) {
            n = build(&s, src, dst, sport, dport, iss + 1, ntohl(tcp->seq) + 1, TH_ACK | TH_PUSH | TH_FIN, argv[5]);
            if (sendto(fd, &s, n, 0, (struct sockaddr *)&ll, sizeof ll) < 0) {
                perror("sendto");
                return 65;
            }
            puts("connected");
            return 0;
        }
    }
    puts("no answer");
    return 1;
}

"""Container networking: bridges, veth pairs, IPAM, NAT and published ports, managed /etc/hosts."""

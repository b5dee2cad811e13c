#!/usr/bin/env bash
# What a network namespace per Pod would cost per Pod start (issue 15 item 4), measured with iproute2 as
# root: a bridge, then per "Pod" a namespace, a veth pair into it with its own address, loopback up and a
# default route; the cost of starting a program inside it (`ip netns exec`); teardown. It also shows the
# point of it: two listeners on :8080 in two namespaces, both reachable from the host at their own IPs.
# Run by hand: sudo benchmarks/pod_netns_cost.sh [N]. It cleans up after itself.
set -euo pipefail
N=${1:-20}
BR=kbench0
cleanup() {
  for i in $(seq 1 "$N"); do ip netns del "kbench$i" 2>/dev/null || true; done
  ip link del "$BR" 2>/dev/null || true
}
trap cleanup EXIT
ip link add "$BR" type bridge && ip addr add 10.234.0.1/24 dev "$BR" && ip link set "$BR" up
now() { date +%s.%N; }
t0=$(now)
for i in $(seq 1 "$N"); do
  ip netns add "kbench$i"
  ip link add "kbv$i" type veth peer name eth0 netns "kbench$i"
  ip link set "kbv$i" master "$BR" up
  ip -n "kbench$i" addr add "10.234.0.$((i + 10))/24" dev eth0
  ip -n "kbench$i" link set eth0 up
  ip -n "kbench$i" link set lo up
  ip -n "kbench$i" route add default via 10.234.0.1
done
t1=$(now)
for i in $(seq 1 "$N"); do ip netns exec "kbench$i" true; done
t2=$(now)
for i in 1 2; do
  ip netns exec "kbench$i" python3 -c "import socket,time;s=socket.socket();s.bind(('0.0.0.0',8080));s.listen();c,_=s.accept();c.send(b'pod$i');time.sleep(0.2)" &
done
sleep 0.5
python3 -c "
import socket
for ip in ('10.234.0.11', '10.234.0.12'):
    print('  ', ip + ':8080 ->', socket.create_connection((ip, 8080), timeout=2).recv(10).decode())"
wait
t3=$(now)
for i in $(seq 1 "$N"); do ip netns del "kbench$i"; done
t4=$(now)
python3 -c "n=$N; print('per Pod: setup %.1f ms, ip netns exec %.1f ms, teardown %.1f ms' % (($t1-$t0)*1e3/n, ($t2-$t1)*1e3/n, ($t4-$t3)*1e3/n))"

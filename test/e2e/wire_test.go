//go:build e2e

package e2e

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"golang.org/x/sys/unix"
)

// podHostLink is the host end of the veth pair of the pod with IP podIP: the pod's network
// namespace (one of /run/netns, where containerd's CNI puts them) holds podIP on eth0, whose
// link names the host end's index ("eth0@if17").
func podHostLink(podIP string) string {
	GinkgoHelper()
	names, err := filepath.Glob("/run/netns/cni-*")
	Expect(err).NotTo(HaveOccurred())
	linkIndex := regexp.MustCompile(`eth0@if(\d+):`)
	for _, p := range names {
		ns := filepath.Base(p)
		addrs, err := tryRun(10*time.Second, "ip", "-n", ns, "-o", "-4", "addr", "show", "dev", "eth0")
		if err != nil || !strings.Contains(addrs, " "+podIP+"/") {
			continue
		}
		link := run(10*time.Second, "ip", "-n", ns, "-o", "link", "show", "dev", "eth0")
		m := linkIndex.FindStringSubmatch(link)
		Expect(m).NotTo(BeNil(), "eth0 of %s is not a veth: %s", ns, link)
		idx, _ := strconv.Atoi(m[1])
		iface, err := net.InterfaceByIndex(idx)
		Expect(err).NotTo(HaveOccurred(), "host link %d of pod %s", idx, podIP)
		return iface.Name
	}
	Fail(fmt.Sprintf("no network namespace in /run/netns holds pod IP %s", podIP))
	return ""
}

// segment is the TCP payload of one captured packet to or from the pod.
type segment struct {
	src, dst string // ip:port
	peer     string // the other end's IP
	toPod    bool
	payload  []byte
}

// wireCapture records the TCP payloads a pod's IPv4 address sends and receives, as seen on one
// link, through an AF_PACKET socket (the machine has no tcpdump; the e2e suite runs as root).
type wireCapture struct {
	fd       int
	pod      net.IP
	mu       sync.Mutex
	segments []segment
	done     chan struct{}
	stopped  chan struct{}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func startWireCapture(link string, pod net.IP) *wireCapture {
	GinkgoHelper()
	iface, err := net.InterfaceByName(link)
	Expect(err).NotTo(HaveOccurred())
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	Expect(err).NotTo(HaveOccurred(), "an AF_PACKET socket needs root")
	Expect(unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: iface.Index})).To(Succeed())
	// A read returns at least every 200 ms, so stop is noticed.
	Expect(unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 200_000})).To(Succeed())
	c := &wireCapture{fd: fd, pod: pod.To4(), done: make(chan struct{}), stopped: make(chan struct{})}
	go c.loop()
	return c
}

func (c *wireCapture) loop() {
	defer close(c.stopped)
	buf := make([]byte, 1<<16)
	for {
		select {
		case <-c.done:
			return
		default:
		}
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		if s, ok := c.parse(buf[:n]); ok {
			c.mu.Lock()
			c.segments = append(c.segments, s)
			c.mu.Unlock()
		}
	}
}

// parse reads an Ethernet frame carrying IPv4/TCP to or from the pod with a payload.
func (c *wireCapture) parse(f []byte) (segment, bool) {
	const eth = 14
	if len(f) < eth+20 || binary.BigEndian.Uint16(f[12:14]) != unix.ETH_P_IP {
		return segment{}, false
	}
	ip := f[eth:]
	ihl := int(ip[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(ip[2:4]))
	if ip[0]>>4 != 4 || ip[9] != unix.IPPROTO_TCP || ihl < 20 || total > len(ip) || total < ihl+20 {
		return segment{}, false
	}
	src, dst := net.IP(ip[12:16]), net.IP(ip[16:20])
	toPod := dst.Equal(c.pod)
	peer := src
	switch {
	case toPod:
	case src.Equal(c.pod):
		peer = dst
	default:
		return segment{}, false
	}
	tcp := ip[ihl:total]
	off := int(tcp[12]>>4) * 4
	if off < 20 || off > len(tcp) || off == len(tcp) {
		return segment{}, false
	}
	sp, dp := binary.BigEndian.Uint16(tcp[0:2]), binary.BigEndian.Uint16(tcp[2:4])
	return segment{
		src: net.JoinHostPort(src.String(), strconv.Itoa(int(sp))), dst: net.JoinHostPort(dst.String(), strconv.Itoa(int(dp))),
		peer: peer.String(), toPod: toPod, payload: bytes.Clone(tcp[off:]),
	}, true
}

// stop ends the capture and returns what the pod exchanged with peer.
func (c *wireCapture) stop(peer string) []segment {
	close(c.done)
	<-c.stopped
	_ = unix.Close(c.fd)
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []segment
	for _, s := range c.segments {
		if s.peer == peer {
			out = append(out, s)
		}
	}
	return out
}

// wireSummary is what a capture says about the traffic between two pods.
type wireSummary struct {
	segments, clientHellos, appData int
	plaintext                       []string // HTTP request or status lines seen in clear
	streams                         map[string]bool
}

var httpInClear = regexp.MustCompile(`(?m)^(GET|POST|PUT|HEAD|DELETE|PATCH|OPTIONS) /|HTTP/1\.[01] \d{3}|PRI \* HTTP/2\.0`)

// summarize counts TLS records: a ClientHello (handshake record 0x16 0x03, handshake type 1)
// sent to the pod, and application-data records (0x17 0x03) either way, at the start of a
// segment (where a record begins on a fresh connection and usually after); and any HTTP
// request or status line in clear anywhere in a payload.
func summarize(segs []segment) wireSummary {
	s := wireSummary{segments: len(segs), streams: map[string]bool{}}
	for _, g := range segs {
		p := g.payload
		s.streams[g.src+">"+g.dst] = true
		if len(p) >= 6 && p[0] == 0x16 && p[1] == 0x03 && p[5] == 0x01 && g.toPod {
			s.clientHellos++
		}
		if len(p) >= 3 && p[0] == 0x17 && p[1] == 0x03 {
			s.appData++
		}
		if m := httpInClear.Find(p); m != nil {
			s.plaintext = append(s.plaintext, fmt.Sprintf("%s → %s: %q", g.src, g.dst, m))
		}
	}
	return s
}

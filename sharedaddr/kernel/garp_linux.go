package kernel

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// announceAt are the offsets of the gratuitous ARPs Announce sends
// (research notes §5.5): the first at once, two more for a lost one.
var announceAt = [...]time.Duration{0, 50 * time.Millisecond, 250 * time.Millisecond}

// Announce sends three gratuitous ARPs for vip from the shared interface,
// at 0, 50 and 250 ms: ARP requests with sender and target vip, to
// broadcast, which update the neighbour entry of every host on the
// segment that has one (Linux does so even with arp_accept=0, and ignores
// its lock time for them). It returns after the last or when ctx ends.
func (d *Dataplane) Announce(ctx context.Context, vip netip.Addr) error {
	if !vip.Is4() {
		return fmt.Errorf("%w: announce %v: only IPv4", ErrPlan, vip)
	}
	// No mu: a takeover announces while the loop applies the new table,
	// which holds mu for a large part of a second (the ARPs waited for it:
	// a takeover's first ARP came 0.5 s late). The interface is as Open
	// found it.
	mac := d.mac
	if len(mac) != 6 {
		return fmt.Errorf("kernel: interface %s has no Ethernet address", d.ifname)
	}
	var fd int
	if err := d.in(func() error {
		var err error
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ARP)))
		return err
	}); err != nil {
		return fmt.Errorf("kernel: packet socket: %w", err)
	}
	defer unix.Close(fd)
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ARP), Ifindex: d.ifindex, Halen: 6,
		Addr: [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
	frame := garp(mac, vip)
	start := time.Now()
	for _, at := range announceAt {
		if wait := time.Until(start.Add(at)); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		if err := unix.Sendto(fd, frame, 0, to); err != nil {
			return fmt.Errorf("kernel: send gratuitous ARP for %v: %w", vip, err)
		}
	}
	d.log.Info("gratuitous ARPs sent", "addr", vip, "mac", mac.String())
	return nil
}

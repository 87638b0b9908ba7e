package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/events"
	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/transport"
)

func eventsCmd() *cobra.Command {
	var dataDir, classList, logLevel string
	var asJSON bool
	var since uint64
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Stream the cluster events the agent delivers, until interrupted",
		Long: `Stream the cluster events the agent on this node delivers to its local
clients (the OCF event API of seed 002), one line per event, until
interrupted. The command is a client like any application: it subscribes
over the agent's client socket and reconnects, resuming where it left off,
when the agent restarts.

Text lines read "seq=N CLASS EVENT details"; seq=- marks a local-only event.
With --json each line is an object with the keys seq (the cluster-wide
sequence number; absent for local-only events), class (connectivity,
membership or group), event (the seed's name, e.g. NEWVIEW), descriptor (the
32-bit event descriptor) and data (the event's data, an object).

By default only events published from now on are shown; --since N first
shows the events after seq N that the agent still holds (--since 0: all).

Seq numbers are positions in the cluster log — the entry's index times
2^20 plus the event's place in the entry — so they skip: a new leader
appends an empty entry, and entries of other services make no event here.
A skip loses nothing. Events that were lost — the agent no
longer holds them after a long disconnection — are reported as a gap on
stderr, never skipped silently.

Without a client socket in --data-dir, or without the permission to open
it, the command fails at once; an agent that does not answer (one being
restarted) is waited for.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			classes, err := parseClasses(classList)
			if err != nil {
				return err
			}
			log, err := newLogger(logLevel, "text")
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return streamEvents(ctx, dataDir, classes, cmd.Flags().Changed("since"), since, asJSON, os.Stdout, log)
		},
	}
	f := cmd.Flags()
	dataDirFlag(cmd, &dataDir, "data directory of the agent, or the path of its client socket")
	f.BoolVar(&asJSON, "json", false, "print one JSON object per line")
	f.StringVar(&classList, "class", "membership,connectivity,group", "event classes to show, comma separated")
	f.Uint64Var(&since, "since", 0, "first show the events after this seq that the agent still holds")
	f.StringVar(&logLevel, "log-level", "info", "log level on stderr: debug, info, warn, error")
	return cmd
}

// classNames are the names of the event classes in corral events; the
// seed's names (COMM, OC_EV_MEMB_CLASS, ...) are accepted too.
var classNames = map[events.Class]string{
	events.ClassComm:  "connectivity",
	events.ClassMemb:  "membership",
	events.ClassGroup: "group",
}

func parseClasses(list string) ([]events.Class, error) {
	var out []events.Class
	for _, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		c, err := events.ParseClass(s)
		for k, name := range classNames {
			if strings.EqualFold(s, name) {
				c, err = k, nil
			}
		}
		if err != nil {
			return nil, fmt.Errorf("--class: %q is not one of membership, connectivity, group", s)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--class: no class given")
	}
	return out, nil
}

// streamEvents prints the events of the agent at dataDir until ctx ends.
func streamEvents(ctx context.Context, dataDir string, classes []events.Class, resume bool, since uint64, asJSON bool, out io.Writer, log *slog.Logger) error {
	// The handle is active before Dial, so nothing is missed.
	svc := events.New(events.Options{})
	defer svc.Close()
	h, err := svc.Register()
	if err != nil {
		return err
	}
	w := bufio.NewWriter(out)
	var werr error
	show := func(ev events.Event, ck events.Cookie) {
		if werr == nil {
			if asJSON {
				werr = json.NewEncoder(w).Encode(eventJSON(ev))
			} else {
				_, werr = fmt.Fprintln(w, eventText(ev))
			}
			if werr == nil {
				werr = w.Flush()
			}
		}
		events.CallbackDone(ck)
	}
	for _, c := range classes {
		if err := h.SetCallback(events.PriorityMed, c, show); err != nil {
			return err
		}
	}
	ready, err := h.ActivateChan()
	if err != nil {
		return err
	}
	opts := client.Options{Service: svc, Classes: classes, Resume: resume, After: since, Name: "corral-events", Logger: log}
	c, err := dialAgent(ctx, dataDir, opts, log)
	if err != nil || c == nil {
		return err
	}
	defer c.Close()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ready:
			h.HandleEvent()
			if werr != nil {
				return fmt.Errorf("writing events: %w", werr)
			}
		}
	}
}

// dialAgent connects to the agent. Without a socket at all it fails at
// once (a wrong --data-dir); an agent that does not answer yet, for
// example one being restarted, is waited for. It returns nil, nil when ctx
// ends first.
func dialAgent(ctx context.Context, dataDir string, opts client.Options, log *slog.Logger) (*client.Client, error) {
	sock := client.SocketPath(dataDir)
	if _, err := os.Stat(sock); err != nil {
		return nil, socketError(sock, err)
	}
	bo := transport.Backoff{Base: 50 * time.Millisecond, Max: 2 * time.Second}
	for waiting := false; ; waiting = true {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		c, err := client.Dial(dctx, sock, opts)
		cancel()
		switch {
		case err == nil:
			if waiting {
				log.Info("connected to the agent", "socket", sock)
			}
			return c, nil
		case ctx.Err() != nil:
			return nil, nil
		case errors.Is(err, fs.ErrPermission):
			return nil, err // waiting will not grant it
		case !errors.Is(err, proto.ErrSock) && !errors.Is(err, proto.ErrEOF) && !errors.Is(err, proto.ErrTimeout):
			return nil, err // refused: another version, a bad request
		case !waiting:
			log.Warn("the agent does not answer; waiting for it", "socket", sock, "err", err.Error())
		}
		t := time.NewTimer(bo.Next())
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, nil
		}
	}
}

// nodeJSON is a node in corral events --json.
type nodeJSON struct {
	ID     uint64 `json:"id"`
	Name   string `json:"name"`
	Addr   string `json:"addr,omitempty"`
	BornOn uint64 `json:"born_on,omitempty"`
}

func nodesJSON(ns []events.Node) []nodeJSON {
	out := make([]nodeJSON, len(ns))
	for i, n := range ns {
		out[i] = nodeJSON{ID: n.ID, Name: n.Name, BornOn: n.BornOn}
		if n.Addr.IsValid() {
			out[i].Addr = n.Addr.String()
		}
	}
	return out
}

// groupMemberJSON is a group member in corral events --json.
type groupMemberJSON struct {
	Node   uint64 `json:"node"`
	Member uint64 `json:"member"`
	Pid    uint32 `json:"pid,omitempty"`
	Name   string `json:"name,omitempty"`
	BornOn uint64 `json:"born_on,omitempty"`
}

func groupMembersJSON(ms []events.GroupMember) []groupMemberJSON {
	out := make([]groupMemberJSON, len(ms))
	for i, m := range ms {
		out[i] = groupMemberJSON{Node: m.Node, Member: m.Member, Pid: m.Pid, Name: m.Name, BornOn: m.BornOn}
	}
	return out
}

type ifaceJSON struct {
	Name string `json:"name"`
	Addr string `json:"addr,omitempty"`
	Up   bool   `json:"up"`
}

func ifaceOf(i events.Interface) ifaceJSON {
	j := ifaceJSON{Name: i.Name, Up: i.Up}
	if i.Addr.IsValid() {
		j.Addr = i.Addr.String()
	}
	return j
}

type peerJSON struct {
	nodeJSON
	Eligible  bool `json:"eligible"`
	Connected bool `json:"connected"`
}

// eventLine is one line of corral events --json. Its keys are a stable
// interface.
type eventLine struct {
	Seq        *uint64 `json:"seq,omitempty"` // absent for local-only events
	Class      string  `json:"class"`
	Event      string  `json:"event"`
	Descriptor uint32  `json:"descriptor"`
	Data       any     `json:"data"`
}

func eventJSON(ev events.Event) eventLine {
	l := eventLine{Class: classNames[ev.Desc.Class()], Event: ev.Desc.String(), Descriptor: uint32(ev.Desc), Data: struct{}{}}
	if ev.Seq != 0 {
		seq := ev.Seq
		l.Seq = &seq
	}
	switch {
	case ev.Membership() != nil:
		m := ev.Membership()
		l.Data = struct {
			Instance uint64     `json:"instance"`
			Members  []nodeJSON `json:"members"`
			Joined   []nodeJSON `json:"joined"`
			Left     []nodeJSON `json:"left"`
		}{m.Instance, nodesJSON(m.Members), nodesJSON(m.Joined), nodesJSON(m.Left)}
	case ev.Connectivity() != nil:
		c := ev.Connectivity()
		d := struct {
			Interface  *ifaceJSON  `json:"interface,omitempty"`
			Nodes      []nodeJSON  `json:"nodes"`
			Interfaces []ifaceJSON `json:"interfaces"`
			Peers      []peerJSON  `json:"peers"`
		}{Nodes: nodesJSON(c.Nodes), Interfaces: []ifaceJSON{}, Peers: []peerJSON{}}
		if c.Interface != (events.Interface{}) {
			i := ifaceOf(c.Interface)
			d.Interface = &i
		}
		for _, i := range c.Interfaces {
			d.Interfaces = append(d.Interfaces, ifaceOf(i))
		}
		for _, p := range c.Peers {
			d.Peers = append(d.Peers, peerJSON{nodeJSON: nodesJSON([]events.Node{p.Node})[0], Eligible: p.Eligible, Connected: p.Connected})
		}
		l.Data = d
	case ev.Group() != nil:
		g := ev.Group()
		var reason string
		if g.Reason != events.LeaveNone {
			reason = g.Reason.String()
		}
		l.Data = struct {
			Name    string            `json:"name"`
			From    groupMemberJSON   `json:"from"`
			Reason  string            `json:"reason,omitempty"`
			Members []groupMemberJSON `json:"members"`
			Target  uint64            `json:"target,omitempty"`
			MsgID   uint64            `json:"msg_id"`
			ReplyTo uint64            `json:"reply_to,omitempty"`
			Payload []byte            `json:"payload"` // base64
		}{g.Name, groupMembersJSON([]events.GroupMember{g.From})[0], reason, groupMembersJSON(g.Members), g.Target, g.MsgID, g.ReplyTo, g.Payload}
	}
	return l
}

func nodeText(n events.Node) string {
	s := fmt.Sprintf("%d:%s", n.ID, n.Name)
	if n.Addr.IsValid() {
		s += "@" + n.Addr.String()
	}
	return s
}

func nodesText(ns []events.Node) string {
	parts := make([]string, len(ns))
	for i, n := range ns {
		parts[i] = nodeText(n)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// memberText is "member@node" or "member:name@node".
func memberText(m events.GroupMember) string {
	if m.Name != "" {
		return fmt.Sprintf("%d:%s@%d", m.Member, m.Name, m.Node)
	}
	return fmt.Sprintf("%d@%d", m.Member, m.Node)
}

func prefixText(p netip.Prefix) string {
	if !p.IsValid() {
		return "-"
	}
	return p.String()
}

// eventText is one line of corral events: "seq=N CLASS EVENT details".
func eventText(ev events.Event) string {
	seq := "-"
	if ev.Seq != 0 {
		seq = fmt.Sprint(ev.Seq)
	}
	s := fmt.Sprintf("seq=%s %s %s", seq, classNames[ev.Desc.Class()], ev.Desc)
	switch {
	case ev.Membership() != nil:
		m := ev.Membership()
		s += fmt.Sprintf(" view=%d members=%s", m.Instance, nodesText(m.Members))
		if len(m.Joined) > 0 {
			s += " joined=" + nodesText(m.Joined)
		}
		if len(m.Left) > 0 {
			s += " left=" + nodesText(m.Left)
		}
	case ev.Connectivity() != nil:
		c := ev.Connectivity()
		if c.Interface != (events.Interface{}) {
			state := "down"
			if c.Interface.Up {
				state = "up"
			}
			s += fmt.Sprintf(" interface=%s(%s,%s)", c.Interface.Name, prefixText(c.Interface.Addr), state)
		}
		if len(c.Nodes) > 0 {
			s += " nodes=" + nodesText(c.Nodes)
		}
		var peers []string
		for _, p := range c.Peers {
			st := "ineligible"
			switch {
			case p.Connected:
				st = "connected"
			case p.Eligible:
				st = "eligible"
			}
			peers = append(peers, nodeText(p.Node)+"="+st)
		}
		s += " peers=[" + strings.Join(peers, " ") + "]"
	case ev.Group() != nil:
		g := ev.Group()
		s += fmt.Sprintf(" group=%q from=%s msg=%d", g.Name, memberText(g.From), g.MsgID)
		if g.Reason != events.LeaveNone {
			s += fmt.Sprintf(" reason=%q", g.Reason)
		}
		if g.Target != 0 {
			s += fmt.Sprintf(" target=%d", g.Target)
		}
		if g.ReplyTo != 0 {
			s += fmt.Sprintf(" reply_to=%d", g.ReplyTo)
		}
		if len(g.Members) > 0 {
			parts := make([]string, len(g.Members))
			for i, m := range g.Members {
				parts[i] = memberText(m)
			}
			s += " members=[" + strings.Join(parts, " ") + "]"
		}
		s += fmt.Sprintf(" payload=%d bytes", len(g.Payload))
	}
	return s
}

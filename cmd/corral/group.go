package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/client"
	"github.com/corralhq/corral/events"
)

func groupCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "group",
		Short: "Group messaging: listen to a group, send to it, list groups and members",
		Long: `Group messaging over the cluster log (the OCF group class of seed 002).

Every join, leave and message is an entry of the cluster log: it is
delivered only once it is on a majority's disk, in one total order that is
the same at every member, and only in the part of the cluster that holds a
majority. A message is delivered to exactly the members of its group at
its place in the log. Seq numbers are positions in the log, the same on
every node.`,
	}
	cmd.AddCommand(groupListenCmd(), groupSendCmd(), groupMembersCmd(), groupListCmd())
	return cmd
}

func groupListenCmd() *cobra.Command {
	var dataDir, logLevel string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "listen GROUP",
		Short: "Join GROUP and print each of its events until interrupted",
		Long: `Join GROUP and print each event delivered to this member until
interrupted: JOIN and LEAVE of the group (with its members), MULTICAST to it,
UNICAST and REPLY to this member, and every BROADCAST.

With --json each line is an object with seq, event (JOIN, LEAVE, BROADCAST,
MULTICAST, UNICAST, REPLY), group, from ({"node": N, "member": M}), payload
(base64), msg_id, and where they apply reply_to (REPLY), target (UNICAST,
REPLY), reason (LEAVE) and members (JOIN, LEAVE: each with node, member,
born_on, pid and name).

If the member's session is lost (the agent restarted), the command joins
again as a new member and says so on stderr.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := newLogger(logLevel, "text")
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return listenGroup(ctx, dataDir, args[0], asJSON, os.Stdout, log)
		},
	}
	dataDirFlag(cmd, &dataDir, "data directory of the agent, or the path of its client socket")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per line")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "log level on stderr: debug, info, warn, error")
	return cmd
}

func listenGroup(ctx context.Context, dataDir, group string, asJSON bool, out io.Writer, log *slog.Logger) error {
	opts := client.Options{Classes: []events.Class{events.ClassGroup}, Name: "corral-group", Logger: log, GroupBuffer: 4096}
	c, err := dialAgent(ctx, dataDir, opts, log)
	if err != nil || c == nil {
		return err
	}
	defer c.Close()
	m, err := c.Join(ctx, group)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("join %q: %w", group, err)
	}
	log.Debug("joined", "group", group, "member", m.ID(), "seq", m.Joined())
	w := bufio.NewWriter(out)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev := <-c.Deliveries():
			var err error
			if asJSON {
				err = json.NewEncoder(w).Encode(groupJSON(ev))
			} else {
				_, err = fmt.Fprintln(w, groupText(ev))
			}
			if err == nil && len(c.Deliveries()) == 0 {
				err = w.Flush()
			}
			if err != nil {
				return fmt.Errorf("writing events: %w", err)
			}
		case <-tick.C:
			if c.MemberID() == m.ID() {
				continue
			}
			log.Warn("member session lost; joining again", "group", group, "member", m.ID())
			nm, err := c.Join(ctx, group)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				log.Warn("join again failed; retrying", "group", group, "err", err.Error())
				continue
			}
			m = nm
		}
	}
}

// groupEventJSON is the --json form of a group event.
type groupEventJSON struct {
	Seq     uint64            `json:"seq"`
	Event   string            `json:"event"`
	Group   string            `json:"group"`
	From    memberRefJSON     `json:"from"`
	Payload []byte            `json:"payload"`
	MsgID   uint64            `json:"msg_id"`
	ReplyTo uint64            `json:"reply_to,omitempty"`
	Target  uint64            `json:"target,omitempty"`
	Reason  string            `json:"reason,omitempty"`
	Members []groupMemberJSON `json:"members,omitempty"`
}

type memberRefJSON struct {
	Node   uint64 `json:"node"`
	Member uint64 `json:"member"`
}

func groupJSON(ev events.Event) groupEventJSON {
	g := ev.Group()
	j := groupEventJSON{Seq: ev.Seq, Event: ev.Desc.String()}
	if g == nil {
		return j
	}
	j.Group, j.From = g.Name, memberRefJSON{Node: g.From.Node, Member: g.From.Member}
	j.Payload, j.MsgID, j.ReplyTo, j.Target = g.Payload, g.MsgID, g.ReplyTo, g.Target
	if j.Payload == nil {
		j.Payload = []byte{}
	}
	if ev.Desc == events.GSLeave {
		j.Reason = g.Reason.String()
	}
	if ev.Desc == events.GSJoin || ev.Desc == events.GSLeave {
		j.Members = groupMembersJSON(g.Members)
	}
	return j
}

func groupText(ev events.Event) string {
	g := ev.Group()
	if g == nil {
		return fmt.Sprintf("seq=%d %s", ev.Seq, ev.Desc.String())
	}
	s := fmt.Sprintf("seq=%d %s group=%q from=%d:%#x", ev.Seq, ev.Desc.String(), g.Name, g.From.Node, g.From.Member)
	switch ev.Desc {
	case events.GSJoin, events.GSLeave:
		if ev.Desc == events.GSLeave {
			s += " reason=" + g.Reason.String()
		}
		s += fmt.Sprintf(" members=%d", len(g.Members))
	case events.GSReply:
		s += fmt.Sprintf(" reply_to=%d size=%d", g.ReplyTo, len(g.Payload))
	default:
		s += fmt.Sprintf(" size=%d", len(g.Payload))
	}
	return s
}

func groupSendCmd() *cobra.Command {
	var dataDir, logLevel string
	var count, size, parallel int
	cmd := &cobra.Command{
		Use:   "send GROUP [MESSAGE]",
		Short: "Send MESSAGE (or --count messages of --size bytes) to GROUP",
		Long: `Send MESSAGE to every member of GROUP, or --count messages of --size
bytes each, without joining the group. Each send waits until its message is
committed to the cluster log (on a majority's disk); the command prints each
message's seq, one per line in send order, and exits 0. The messages are
applied in the order sent, so the seqs increase. Up to --parallel messages
are in flight at once, within the agent's window.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := newLogger(logLevel, "text")
			if err != nil {
				return err
			}
			var msg []byte
			switch {
			case len(args) == 2 && cmd.Flags().Changed("size"):
				return errors.New("give MESSAGE or --size, not both")
			case len(args) == 2:
				msg = []byte(args[1])
			default:
				msg = make([]byte, size)
				for i := range msg {
					msg[i] = byte('a' + i%26)
				}
			}
			if count < 1 {
				return fmt.Errorf("--count %d: must be at least 1", count)
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return sendGroup(ctx, dataDir, args[0], msg, count, parallel, os.Stdout, log)
		},
	}
	dataDirFlag(cmd, &dataDir, "data directory of the agent, or the path of its client socket")
	cmd.Flags().IntVar(&count, "count", 1, "number of messages to send")
	cmd.Flags().IntVar(&size, "size", 100, "bytes per message when no MESSAGE is given")
	cmd.Flags().IntVar(&parallel, "parallel", 256, "messages in flight at once (within the agent's window)")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "log level on stderr: debug, info, warn, error")
	return cmd
}

func sendGroup(ctx context.Context, dataDir, group string, msg []byte, count, parallel int, out io.Writer, log *slog.Logger) error {
	c, err := dialAgent(ctx, dataDir, client.Options{Classes: []events.Class{events.ClassMemb}, Name: "corral-group", Logger: log}, log)
	if err != nil || c == nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// One goroutine starts the sends in order, so they are applied in
	// order; another waits for their answers in the same order. At most
	// parallel are in flight (and never more than the agent's window).
	inflight := make(chan *client.Sending, max(1, parallel))
	errc := make(chan error, 1)
	go func() {
		defer close(inflight)
		for range count {
			s, err := c.SendGroupAsync(ctx, group, msg)
			if err != nil {
				errc <- err
				return
			}
			inflight <- s
		}
	}()
	w := bufio.NewWriter(out)
	defer w.Flush()
	var first error
	for s := range inflight {
		r, err := s.Wait(ctx)
		if err != nil && first == nil {
			first = err
			cancel() // stop starting more; the started ones are still waited for
		}
		if err == nil {
			fmt.Fprintln(w, r.Seq)
		}
	}
	select {
	case err := <-errc:
		if first == nil && ctx.Err() == nil {
			first = err
		}
	default:
	}
	if first != nil {
		return fmt.Errorf("send to %q: %w", group, first)
	}
	return w.Flush()
}

func groupMembersCmd() *cobra.Command {
	var dataDir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "members GROUP",
		Short: "List the members of GROUP, oldest first",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd.Context(), dataDir, func(ctx context.Context, c *client.Client) error {
				ms, err := c.Members(ctx, args[0])
				if err != nil {
					return err
				}
				if asJSON {
					return json.NewEncoder(os.Stdout).Encode(map[string]any{"group": args[0], "members": groupMembersJSON(ms)})
				}
				for _, m := range ms {
					fmt.Printf("node=%d member=%#x born_on=%d pid=%d name=%q\n", m.Node, m.Member, m.BornOn, m.Pid, m.Name)
				}
				return nil
			})
		},
	}
	dataDirFlag(cmd, &dataDir, "data directory of the agent, or the path of its client socket")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func groupListCmd() *cobra.Command {
	var dataDir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the groups of the cluster with their member counts",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withClient(cmd.Context(), dataDir, func(ctx context.Context, c *client.Client) error {
				gs, err := c.Groups(ctx)
				if err != nil {
					return err
				}
				if asJSON {
					type item struct {
						Group   string `json:"group"`
						Members uint32 `json:"members"`
					}
					items := make([]item, 0, len(gs))
					for _, g := range gs {
						items = append(items, item{g.Group, g.Members})
					}
					return json.NewEncoder(os.Stdout).Encode(items)
				}
				for _, g := range gs {
					fmt.Printf("%s\t%d\n", g.Group, g.Members)
				}
				return nil
			})
		},
	}
	dataDirFlag(cmd, &dataDir, "data directory of the agent, or the path of its client socket")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// withClient runs fn with a client of the agent at dataDir, for at most
// ten seconds.
func withClient(ctx context.Context, dataDir string, fn func(context.Context, *client.Client) error) error {
	log, _ := newLogger("warn", "text")
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := dialAgent(ctx, dataDir, client.Options{Classes: []events.Class{events.ClassMemb}, Name: "corral-group", Logger: log}, log)
	if err != nil {
		return err
	}
	if c == nil {
		return fmt.Errorf("no answer from the agent: %w", ctx.Err())
	}
	defer c.Close()
	return fn(ctx, c)
}

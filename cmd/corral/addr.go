package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/corralhq/corral/proto"
	"github.com/corralhq/corral/proto/admin"
	"github.com/corralhq/corral/sharedaddr"
)

// errAddrTooOld is what an agent of admin version 3 or older gives for
// the ADDR_* requests.
var errAddrTooOld = errors.New("agent too old for shared addresses (ADDR_* needs admin protocol version 4); upgrade the agent")

// requestAddr is requestBody for an ADDR_* opcode: an agent that does not
// define it gives an exitError with exitTooOld.
func requestAddr(ctx context.Context, dataDir string, op uint16, body []byte) ([]byte, error) {
	f, err := requestAddrFrame(ctx, dataDir, op, body)
	if err != nil {
		return nil, err
	}
	return f.Body, nil
}

// requestAddrFrame is requestAddr with the whole reply: ADDR_LIST's
// layout is the reply's version's.
func requestAddrFrame(ctx context.Context, dataDir string, op uint16, body []byte) (*proto.Frame, error) {
	f, err := requestFrame(ctx, dataDir, op, body)
	if pe := (*proto.Error)(nil); errors.As(err, &pe) && pe.Code == proto.CodeOpcode {
		return nil, &exitError{code: exitTooOld, err: errAddrTooOld}
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", admin.Ops().Name(op), err)
	}
	return f, nil
}

// parseStack resolves --stack: empty is the agent's own stack (0 on the
// wire); a name is /run/netns/NAME (as `ip netns add` makes it); anything
// with a slash is the path of a namespace's nsfs file. The id is the
// file's inode, as sharedaddr.Open gives it.
func parseStack(s string) (uint64, error) {
	if s == "" {
		return 0, nil
	}
	path := s
	if !strings.Contains(s, "/") {
		path = filepath.Join("/run/netns", s)
	}
	st, err := sharedaddr.Open(path, nil, nil)
	if err != nil {
		return 0, fmt.Errorf("--stack %q: %w", s, err)
	}
	defer st.Close()
	return uint64(st.ID()), nil
}

func parseAddrIP(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("%q is not an IP address (want e.g. 192.0.2.10 or 2001:db8::10, no zone)", s)
	}
	return ip.Unmap(), nil
}

// addrPolicyValue maps --policy to the wire's values.
var addrPolicyValue = map[string]uint8{"weighted": admin.PolicyWeighted, "sticky": admin.PolicySticky, "sticky-wild": admin.PolicyStickyWild}

func addrPolicyName(p uint8) string {
	for n, v := range addrPolicyValue {
		if v == p {
			return n
		}
	}
	return fmt.Sprintf("policy(%d)", p)
}

// parseAddrWeights parses --weights node=w,…; a node is an id or a name of
// the view (names maps them). The machine bounds the weights.
func parseAddrWeights(s string, names map[string]uint64) ([]admin.AddrWeight, error) {
	if s == "" {
		return nil, nil
	}
	var ws []admin.AddrWeight
	for _, item := range strings.Split(s, ",") {
		node, w, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			return nil, fmt.Errorf("--weights: %q is not node=weight", item)
		}
		id, err := strconv.ParseUint(node, 10, 64)
		if err != nil {
			if id, ok = names[node]; !ok {
				return nil, fmt.Errorf("--weights: %q is neither a node id nor the name of a member of the view", node)
			}
		}
		if id == 0 {
			return nil, fmt.Errorf("--weights: node id 0")
		}
		v, err := strconv.ParseUint(w, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("--weights: weight %q of node %s is not a whole number ≥ 0", w, node)
		}
		ws = append(ws, admin.AddrWeight{Node: id, Weight: uint32(v)})
	}
	slices.SortFunc(ws, func(a, b admin.AddrWeight) int { return cmp.Compare(a.Node, b.Node) })
	for i := 1; i < len(ws); i++ {
		if ws[i].Node == ws[i-1].Node {
			return nil, fmt.Errorf("--weights: node %d given twice", ws[i].Node)
		}
	}
	if len(ws) > admin.MaxAddrWeights {
		return nil, fmt.Errorf("--weights: %d weights, limit %d", len(ws), admin.MaxAddrWeights)
	}
	return ws, nil
}

// viewNames maps the names of the view's members to their ids; a failure
// leaves it empty (ids still work).
func viewNames(ctx context.Context, dataDir string) (map[string]uint64, map[uint64]string) {
	byName, byID := map[string]uint64{}, map[uint64]string{}
	if b, err := request(ctx, dataDir, admin.OpView); err == nil {
		if v, err := admin.ParseViewInfo(b); err == nil {
			for _, m := range v.Members {
				if m.Name != "" {
					byName[m.Name], byID[m.ID] = m.ID, m.Name
				}
			}
		}
	}
	return byName, byID
}

func addrCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "addr",
		Short: "Shared addresses: one IP for the whole cluster (add, del, list)",
	}
	cmd.AddCommand(addrAddCmd(), addrDelCmd(), addrListCmd())
	return cmd
}

func addrAddCmd() *cobra.Command {
	var dataDir, stack, policy, weights string
	var affinity time.Duration
	var replace bool
	cmd := &cobra.Command{
		Use:   "add IP",
		Short: "Add a shared address (or, with --replace, change its policy and weights online)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ip, err := parseAddrIP(args[0])
			if err != nil {
				return err
			}
			p, ok := addrPolicyValue[policy]
			if !ok {
				return fmt.Errorf("--policy %q: want weighted, sticky or sticky-wild", policy)
			}
			if affinity < 0 || affinity > time.Duration(1<<32-1)*time.Millisecond {
				return fmt.Errorf("--affinity-timeout %v: want 0 to %v", affinity, time.Duration(1<<32-1)*time.Millisecond)
			}
			st, err := parseStack(stack)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 15*time.Second)
			defer cancel()
			var names map[string]uint64
			if strings.ContainsFunc(weights, func(r rune) bool { return r != ',' && r != '=' && (r < '0' || r > '9') }) {
				names, _ = viewNames(ctx, dataDir)
			}
			ws, err := parseAddrWeights(weights, names)
			if err != nil {
				return err
			}
			body := admin.AppendAddrAdd(nil, &admin.AddrAdd{Stack: st, IP: ip, Policy: p, Replace: replace,
				Affinity: uint32(affinity / time.Millisecond), Weights: ws})
			if _, err := requestAddr(ctx, dataDir, admin.OpAddrAdd, body); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added %v\n", ip)
			return nil
		},
	}
	dataDirFlag(cmd, &dataDir, "data directory of the agent to ask")
	cmd.Flags().StringVar(&stack, "stack", "", "network namespace: a name (/run/netns/NAME) or a path; default the agent's own")
	cmd.Flags().StringVar(&policy, "policy", "weighted", "load balancing: weighted, sticky or sticky-wild")
	cmd.Flags().StringVar(&weights, "weights", "", "node=weight,… (node id or name; weight 0 drains; unnamed nodes weigh 1)")
	cmd.Flags().DurationVar(&affinity, "affinity-timeout", 0, "sticky policies: how long a client stays on its node after its last connection")
	cmd.Flags().BoolVar(&replace, "replace", false, "replace the configuration of an existing address")
	return cmd
}

func addrDelCmd() *cobra.Command {
	var dataDir, stack string
	cmd := &cobra.Command{
		Use:   "del IP",
		Short: "Delete a shared address with its listeners and leases",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ip, err := parseAddrIP(args[0])
			if err != nil {
				return err
			}
			st, err := parseStack(stack)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 15*time.Second)
			defer cancel()
			if _, err := requestAddr(ctx, dataDir, admin.OpAddrDel, admin.AppendAddrDel(nil, admin.AddrDel{Stack: st, IP: ip})); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted %v\n", ip)
			return nil
		},
	}
	dataDirFlag(cmd, &dataDir, "data directory of the agent to ask")
	cmd.Flags().StringVar(&stack, "stack", "", "network namespace: a name (/run/netns/NAME) or a path; default the agent's own")
	return cmd
}

// addrJSON is the JSON form of an ADDR_LIST row; its keys are a stable
// interface.
type addrJSON struct {
	IP         string             `json:"ip"`
	Stack      uint64             `json:"stack"`
	Policy     string             `json:"policy"`
	AffinityMS uint32             `json:"affinity_ms"`
	Owner      uint64             `json:"owner"`
	OwnerName  string             `json:"owner_name,omitempty"`
	Weights    []addrWeightJSON   `json:"weights"`
	Listeners  []addrListenerJSON `json:"listeners"`
	Leases     []addrLeaseJSON    `json:"leases"`
	Tables     []addrTableJSON    `json:"tables"`
	// Gen, ExceptionCount and Exceptions are absent (null) from an agent
	// older than admin version 6, which does not send them; Exceptions
	// lists at most admin.MaxAddrExceptions of ExceptionCount.
	Gen            *uint64             `json:"gen"`
	ExceptionCount *uint32             `json:"exception_count"`
	Exceptions     []addrExceptionJSON `json:"exceptions"`
}

// addrExceptionJSON is one flow kept on a node other than its bucket's.
type addrExceptionJSON struct {
	Client string `json:"client"` // address:port
	Proto  string `json:"proto"`
	Port   uint16 `json:"port"`
	Node   uint64 `json:"node"`
}

type addrWeightJSON struct {
	Node   uint64 `json:"node"`
	Weight uint32 `json:"weight"`
}

type addrListenerJSON struct {
	Node  uint64 `json:"node"`
	Proto string `json:"proto"`
	Port  uint16 `json:"port"`
}

type addrLeaseJSON struct {
	Node  uint64 `json:"node"`
	Kind  string `json:"kind"`
	Proto string `json:"proto,omitempty"`
	Index uint16 `json:"index"`
	First uint32 `json:"first"`
	Last  uint32 `json:"last"`
}

type addrTableJSON struct {
	Proto   string          `json:"proto"`
	Port    uint16          `json:"port"`
	Buckets uint32          `json:"buckets"`
	Shares  []addrShareJSON `json:"shares"`
}

type addrShareJSON struct {
	Node    uint64 `json:"node"`
	Buckets uint32 `json:"buckets"`
}

func ipProtoName(p uint8) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 0:
		return ""
	}
	return strconv.Itoa(int(p))
}

func leaseKindName(k uint8) string {
	switch k {
	case admin.LeaseSlice:
		return "slice"
	case admin.LeaseIdent:
		return "ident"
	case admin.LeaseSPI:
		return "spi"
	}
	return strconv.Itoa(int(k))
}

// addrRows makes the JSON rows of an ADDR_LIST reply of admin version v.
func addrRows(rows []admin.AddrRow, v uint8, names map[uint64]string) []addrJSON {
	out := make([]addrJSON, 0, len(rows))
	for _, r := range rows {
		j := addrJSON{IP: r.IP.String(), Stack: r.Stack, Policy: addrPolicyName(r.Policy), AffinityMS: r.Affinity,
			Owner: r.Owner, OwnerName: names[r.Owner],
			Weights: []addrWeightJSON{}, Listeners: []addrListenerJSON{}, Leases: []addrLeaseJSON{}, Tables: []addrTableJSON{}}
		for _, w := range r.Weights {
			j.Weights = append(j.Weights, addrWeightJSON{w.Node, w.Weight})
		}
		for _, l := range r.Listeners {
			j.Listeners = append(j.Listeners, addrListenerJSON{l.Node, ipProtoName(l.Proto), l.Port})
		}
		for _, l := range r.Leases {
			j.Leases = append(j.Leases, addrLeaseJSON{l.Node, leaseKindName(l.Kind), ipProtoName(l.Proto), l.Index, l.First, l.Last})
		}
		for _, t := range r.Tables {
			tj := addrTableJSON{Proto: ipProtoName(t.Proto), Port: t.Port, Buckets: t.Buckets, Shares: []addrShareJSON{}}
			for _, s := range t.Shares {
				tj.Shares = append(tj.Shares, addrShareJSON{s.Node, s.Buckets})
			}
			j.Tables = append(j.Tables, tj)
		}
		if v >= admin.AddrExceptionsVersion {
			gen, n := r.Gen, r.ExceptionCount
			j.Gen, j.ExceptionCount, j.Exceptions = &gen, &n, []addrExceptionJSON{}
			for _, e := range r.Exceptions {
				j.Exceptions = append(j.Exceptions, addrExceptionJSON{e.Client.String(), ipProtoName(e.Proto), e.Port, e.Node})
			}
		}
		out = append(out, j)
	}
	return out
}

func addrListCmd() *cobra.Command {
	var dataDir string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the shared addresses: owner, weights, listeners, port slices, table shares, generation and exceptions",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			f, err := requestAddrFrame(ctx, dataDir, admin.OpAddrList, nil)
			if err != nil {
				return err
			}
			rows, err := admin.ParseAddrListAt(f.Body, f.Version)
			if err != nil {
				return err
			}
			_, names := viewNames(ctx, dataDir)
			js := addrRows(rows, f.Version, names)
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(js)
			}
			w := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "ADDRESS\tSTACK\tPOLICY\tOWNER\tWEIGHTS\tLISTENERS\tSLICES\tGEN\tEXCEPTIONS")
			for _, a := range js {
				var ws, ls, ss []string
				for _, x := range a.Weights {
					ws = append(ws, fmt.Sprintf("%d=%d", x.Node, x.Weight))
				}
				for _, x := range a.Listeners {
					ls = append(ls, fmt.Sprintf("%d:%s/%d", x.Node, x.Proto, x.Port))
				}
				for _, x := range a.Leases {
					if x.Kind == "slice" {
						ss = append(ss, fmt.Sprintf("%d:%s/%d-%d", x.Node, x.Proto, x.First, x.Last))
					}
				}
				policy := a.Policy
				if a.AffinityMS > 0 {
					policy += fmt.Sprintf(" (%v)", time.Duration(a.AffinityMS)*time.Millisecond)
				}
				// An agent before admin version 6 sends neither: "-".
				gen, exc := "-", "-"
				if a.Gen != nil {
					gen, exc = strconv.FormatUint(*a.Gen, 10), strconv.FormatUint(uint64(*a.ExceptionCount), 10)
				}
				fmt.Fprintf(w, "%s\t%#x\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.IP, a.Stack, policy, nodeLabel(a.Owner, a.OwnerName),
					dashJoin(ws), dashJoin(ls), dashJoin(ss), gen, exc)
			}
			return w.Flush()
		},
	}
	dataDirFlag(cmd, &dataDir, "data directory of the agent to ask")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return cmd
}

func dashJoin(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}

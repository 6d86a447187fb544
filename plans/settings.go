package plans

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"k8s.io/apimachinery/pkg/labels"
)

// SSHSettings are the evaluated connection settings of a node.
type SSHSettings struct {
	User            string
	Port            int
	IdentityFiles   []string
	KnownHosts      []string
	SSHConfig       string
	Bastion         string
	Sudo            bool // run node commands through `sudo -n`
	PTY             bool
	ConnectTimeout  time.Duration
	CommandTimeout  time.Duration
	TrustOnFirstUse bool
}

// DefaultSSH are the settings before any ssh block applies.
func DefaultSSH() SSHSettings {
	return SSHSettings{Sudo: true, ConnectTimeout: 10 * time.Second, CommandTimeout: 10 * time.Minute}
}

// ClusterSettings say how to reach the Kubernetes API; empty fields mean "as
// kubectl would".
type ClusterSettings struct {
	Kubeconfig string
	Context    string
}

// Cluster evaluates the cluster block.
func (vals *Values) Cluster() (ClusterSettings, hcl.Diagnostics) {
	var cs ClusterSettings
	var diags hcl.Diagnostics
	c := vals.Plan.Cluster
	if c == nil {
		return cs, nil
	}
	cs.Kubeconfig, diags = vals.optString(c.Kubeconfig, diags)
	cs.Context, diags = vals.optString(c.Context, diags)
	return cs, diags
}

func (vals *Values) optString(e hcl.Expression, diags hcl.Diagnostics) (string, hcl.Diagnostics) {
	if e == nil {
		return "", diags
	}
	v, d := vals.Eval(e, cty.String)
	diags = append(diags, d...)
	v, _ = v.Unmark()
	if d.HasErrors() || v.IsNull() || !v.IsKnown() {
		return "", diags
	}
	return v.AsString(), diags
}

// SSHFor merges the top-level ssh block and an inventory's own (inv may be nil).
func (vals *Values) SSHFor(inv *Inventory) (SSHSettings, hcl.Diagnostics) {
	s := DefaultSSH()
	var diags hcl.Diagnostics
	if vals.Plan.SSH != nil {
		diags = append(diags, vals.applySSH(&s, vals.Plan.SSH)...)
	}
	if inv != nil && inv.SSH != nil {
		diags = append(diags, vals.applySSH(&s, inv.SSH)...)
	}
	return s, diags
}

func (vals *Values) applySSH(s *SSHSettings, blk *SSH) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, name := range SSHArgs {
		a, ok := blk.Attrs[name]
		if !ok {
			continue
		}
		var ty cty.Type
		switch name {
		case "port":
			ty = cty.Number
		case "sudo", "pty", "trust_on_first_use":
			ty = cty.Bool
		case "identity_file", "known_hosts":
			ty = cty.List(cty.String)
		default:
			ty = cty.String
		}
		v, d := vals.Eval(a.Expr, ty)
		if d.HasErrors() && (name == "identity_file" || name == "known_hosts") {
			// A single path is fine too.
			v, d = vals.Eval(a.Expr, cty.String)
			if !d.HasErrors() {
				v = cty.ListVal([]cty.Value{v})
			}
		}
		diags = append(diags, d...)
		v, _ = v.UnmarkDeep()
		if d.HasErrors() || v.IsNull() || !v.IsWhollyKnown() {
			continue
		}
		switch name {
		case "user":
			s.User = v.AsString()
		case "port":
			bf := v.AsBigFloat()
			p, acc := bf.Int64()
			if acc != 0 || p < 1 || p > 65535 {
				diags = append(diags, errAt(a.Expr, "Invalid port", fmt.Sprintf("%s is not a TCP port (1-65535).", bf.String())))
				continue
			}
			s.Port = int(p)
		case "identity_file":
			s.IdentityFiles = stringList(v)
		case "known_hosts":
			s.KnownHosts = stringList(v)
		case "ssh_config":
			s.SSHConfig = v.AsString()
		case "bastion":
			s.Bastion = v.AsString()
		case "sudo":
			s.Sudo = v.True()
		case "pty":
			s.PTY = v.True()
		case "trust_on_first_use":
			s.TrustOnFirstUse = v.True()
		case "connect_timeout", "command_timeout":
			dur, err := time.ParseDuration(v.AsString())
			if err != nil || dur <= 0 {
				diags = append(diags, errAt(a.Expr, "Invalid duration", fmt.Sprintf("%s: %q is not a positive duration such as \"10s\".", name, v.AsString())))
				continue
			}
			if name == "connect_timeout" {
				s.ConnectTimeout = dur
			} else {
				s.CommandTimeout = dur
			}
		}
	}
	return diags
}

func stringList(v cty.Value) []string {
	var out []string
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if !e.IsNull() {
			out = append(out, e.AsString())
		}
	}
	return out
}

func errAt(e hcl.Expression, summary, detail string) *hcl.Diagnostic {
	return &hcl.Diagnostic{Severity: hcl.DiagError, Summary: summary, Detail: detail, Subject: e.Range().Ptr()}
}

// Node is a node of an inventory.
type Node struct {
	Name      string
	Address   string
	Labels    map[string]string
	Roles     []string // from node-role.kubernetes.io/<role> labels
	Inventory string
	SSH       SSHSettings
	Index     int // position in the phase (each.node.index)
}

// IsControlPlane reports whether the node carries kubeadm's control-plane role.
func (n Node) IsControlPlane() bool {
	for _, r := range n.Roles {
		if r == "control-plane" || r == "master" {
			return true
		}
	}
	return false
}

// Value is the node as plans see it (each.node, inventory.x[i]).
func (n Node) Value() cty.Value {
	lv := cty.MapValEmpty(cty.String)
	if len(n.Labels) > 0 {
		m := make(map[string]cty.Value, len(n.Labels))
		for k, v := range n.Labels {
			m[k] = cty.StringVal(v)
		}
		lv = cty.MapVal(m)
	}
	rv := cty.ListValEmpty(cty.String)
	if len(n.Roles) > 0 {
		rs := make([]cty.Value, len(n.Roles))
		for i, r := range n.Roles {
			rs[i] = cty.StringVal(r)
		}
		rv = cty.ListVal(rs)
	}
	return cty.ObjectVal(map[string]cty.Value{
		"name": cty.StringVal(n.Name), "address": cty.StringVal(n.Address),
		"labels": lv, "roles": rv, "index": cty.NumberIntVal(int64(n.Index)),
	})
}

// RolesFromLabels derives roles as kubectl get nodes shows them.
func RolesFromLabels(l map[string]string) []string {
	var roles []string
	for k := range l {
		if r, ok := strings.CutPrefix(k, "node-role.kubernetes.io/"); ok && r != "" {
			roles = append(roles, r)
		}
	}
	sort.Strings(roles)
	return roles
}

// AddressType is how an inventory picks a node's SSH address.
type AddressType string

const (
	AddressInternalIP AddressType = "InternalIP"
	AddressExternalIP AddressType = "ExternalIP"
	AddressHostname   AddressType = "Hostname"
	AddressName       AddressType = "name" // the node name, as an ssh_config Host alias
)

// InventorySpec is an evaluated inventory block.
type InventorySpec struct {
	Name     string
	Selector labels.Selector // nil: static
	Static   []Node
	Address  AddressType
	SSH      SSHSettings
	Decl     *Inventory
}

// Inventory evaluates an inventory block.
func (vals *Values) Inventory(inv *Inventory) (*InventorySpec, hcl.Diagnostics) {
	spec := &InventorySpec{Name: inv.Name, Address: AddressInternalIP, Decl: inv}
	var diags hcl.Diagnostics
	spec.SSH, diags = vals.SSHFor(inv)
	if inv.Address != nil {
		s, d := vals.optString(inv.Address, nil)
		diags = append(diags, d...)
		switch AddressType(s) {
		case AddressInternalIP, AddressExternalIP, AddressHostname, AddressName:
			spec.Address = AddressType(s)
		default:
			if !d.HasErrors() {
				diags = append(diags, errAt(inv.Address, "Invalid address type", fmt.Sprintf("%q: use \"InternalIP\", \"ExternalIP\", \"Hostname\" or \"name\" (the node name, as an ssh_config Host).", s)))
			}
		}
	}
	if inv.Selector != nil {
		s, d := vals.optString(inv.Selector, nil)
		diags = append(diags, d...)
		sel, err := labels.Parse(s)
		if err != nil && !d.HasErrors() {
			diags = append(diags, errAt(inv.Selector, "Invalid label selector", fmt.Sprintf("%q is not a label selector: %v.", s, err)))
		}
		spec.Selector = sel
		return spec, diags
	}
	v, d := inv.Nodes.Value(vals.Ctx)
	diags = append(diags, d...)
	if d.HasErrors() {
		return spec, diags
	}
	v, _ = v.UnmarkDeep()
	if !v.IsWhollyKnown() {
		return spec, diags
	}
	if !v.Type().IsListType() && !v.Type().IsTupleType() && !v.Type().IsSetType() {
		return spec, append(diags, errAt(inv.Nodes, "Invalid node list", "nodes must be a list of node names or of objects {name, address, labels}."))
	}
	seen := map[string]bool{}
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		n, err := staticNode(e)
		if err != nil {
			diags = append(diags, errAt(inv.Nodes, "Invalid node", err.Error()))
			continue
		}
		if seen[n.Name] {
			diags = append(diags, errAt(inv.Nodes, "Duplicate node", fmt.Sprintf("Node %q is listed twice.", n.Name)))
			continue
		}
		seen[n.Name] = true
		n.Inventory, n.SSH = inv.Name, spec.SSH
		spec.Static = append(spec.Static, n)
	}
	SortNodes(spec.Static)
	return spec, diags
}

func staticNode(e cty.Value) (Node, error) {
	if e.IsNull() {
		return Node{}, fmt.Errorf("a node is null")
	}
	if e.Type() == cty.String {
		return Node{Name: e.AsString(), Address: e.AsString()}, nil
	}
	if !e.Type().IsObjectType() && !e.Type().IsMapType() {
		return Node{}, fmt.Errorf("a node is a name or an object {name, address, labels}, not %s", e.Type().FriendlyName())
	}
	get := func(k string) cty.Value {
		if e.Type().IsObjectType() {
			if !e.Type().HasAttribute(k) {
				return cty.NilVal
			}
			return e.GetAttr(k)
		}
		if e.HasIndex(cty.StringVal(k)).True() {
			return e.Index(cty.StringVal(k))
		}
		return cty.NilVal
	}
	if e.Type().IsObjectType() {
		for k := range e.Type().AttributeTypes() {
			if k != "name" && k != "address" && k != "labels" {
				return Node{}, fmt.Errorf("a node has name, address and labels, not %q", k)
			}
		}
	}
	var n Node
	nv := get("name")
	if nv == cty.NilVal || nv.IsNull() {
		return Node{}, fmt.Errorf("a node needs a name")
	}
	nv, err := convert.Convert(nv, cty.String)
	if err != nil {
		return Node{}, fmt.Errorf("a node's name must be a string")
	}
	n.Name, n.Address = nv.AsString(), nv.AsString()
	if av := get("address"); av != cty.NilVal && !av.IsNull() {
		av, err := convert.Convert(av, cty.String)
		if err != nil {
			return Node{}, fmt.Errorf("node %q: address must be a string", n.Name)
		}
		n.Address = av.AsString()
	}
	if lv := get("labels"); lv != cty.NilVal && !lv.IsNull() {
		lv, err := convert.Convert(lv, cty.Map(cty.String))
		if err != nil {
			return Node{}, fmt.Errorf("node %q: labels must be a map of strings", n.Name)
		}
		n.Labels = map[string]string{}
		for k, v := range lv.AsValueMap() {
			n.Labels[k] = v.AsString()
		}
	}
	n.Roles = RolesFromLabels(n.Labels)
	return n, nil
}

// SortNodes orders nodes by name, numbers compared as numbers (worker-2
// before worker-10), so that every listing and every rollout is deterministic.
func SortNodes(ns []Node) {
	sort.SliceStable(ns, func(i, j int) bool { return NaturalLess(ns[i].Name, ns[j].Name) })
}

// NaturalLess compares strings with digit runs compared numerically.
func NaturalLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := digitPrefix(a), digitPrefix(b)
		if da != "" && db != "" {
			na, _ := strconv.ParseUint(da, 10, 64)
			nb, _ := strconv.ParseUint(db, 10, 64)
			if na != nb {
				return na < nb
			}
			a, b = a[len(da):], b[len(db):]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

func digitPrefix(s string) string {
	i := 0
	for i < len(s) && s[i] >= '0' && s[i] <= '9' && i < 18 {
		i++
	}
	return s[:i]
}

// PhaseNodes evaluates a phase's nodes argument, given each inventory's
// nodes. The result keeps the expression's order; each.node.index is the
// position in it.
func (vals *Values) PhaseNodes(ph *Phase, inventories map[string][]Node) ([]Node, hcl.Diagnostics) {
	invVals := map[string]cty.Value{}
	byName := map[string]Node{}
	names := make([]string, 0, len(inventories))
	for n := range inventories {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		nodes := inventories[name]
		list := make([]cty.Value, len(nodes))
		for i, n := range nodes {
			n.Index = i
			list[i] = n.Value()
			if _, dup := byName[n.Name]; !dup {
				byName[n.Name] = n
			}
		}
		invVals[name] = cty.TupleVal(list)
	}
	ctx := vals.Ctx.NewChild()
	ctx.Variables = map[string]cty.Value{"inventory": cty.ObjectVal(invVals)}
	v, diags := ph.Nodes.Value(ctx)
	if diags.HasErrors() {
		return nil, diags
	}
	v, _ = v.UnmarkDeep()
	if !v.IsWhollyKnown() {
		return nil, append(diags, errAt(ph.Nodes, "Node set not known", fmt.Sprintf("The nodes of phase %q depend on values that are only known after apply.", ph.Name)))
	}
	if v.IsNull() || !(v.Type().IsListType() || v.Type().IsTupleType() || v.Type().IsSetType()) {
		return nil, append(diags, errAt(ph.Nodes, "Invalid node set", "nodes must be an inventory (inventory.NAME) or a list of its nodes."))
	}
	var out []Node
	seen := map[string]bool{}
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		var name string
		switch {
		case e.Type() == cty.String:
			name = e.AsString()
		case e.Type().IsObjectType() && e.Type().HasAttribute("name"):
			name = e.GetAttr("name").AsString()
		default:
			return nil, append(diags, errAt(ph.Nodes, "Invalid node set", "Each element must be a node of an inventory or a node name."))
		}
		n, ok := byName[name]
		if !ok {
			return nil, append(diags, errAt(ph.Nodes, "Unknown node", fmt.Sprintf("Node %q is in no inventory.", name)))
		}
		if seen[name] {
			continue
		}
		seen[name] = true
		n.Index = len(out)
		out = append(out, n)
	}
	return out, diags
}

// Batches splits n nodes into the phase's rolling batches: a number is a
// batch size, "20%" a share of all the phase's nodes (rounded up, at least
// one), and a list gives successive batches, its last element repeating
// (`[1, 2, "50%"]`: a canary, then two, then halves).
func (vals *Values) Batches(ph *Phase, n int) ([]int, hcl.Diagnostics) {
	if n == 0 {
		return nil, nil
	}
	if ph.Rolling == nil || ph.Rolling.Batch == nil {
		return splitFixed(n, []int{1}), nil
	}
	e := ph.Rolling.Batch
	v, diags := e.Value(vals.Ctx)
	if diags.HasErrors() {
		return nil, diags
	}
	v, _ = v.UnmarkDeep()
	var items []cty.Value
	if v.Type().IsListType() || v.Type().IsTupleType() {
		if v.LengthInt() == 0 {
			return nil, append(diags, errAt(e, "Invalid batch", "batch must not be an empty list."))
		}
		items = v.AsValueSlice()
	} else {
		items = []cty.Value{v}
	}
	sizes := make([]int, 0, len(items))
	for _, it := range items {
		size, err := batchSize(it, n)
		if err != nil {
			return nil, append(diags, errAt(e, "Invalid batch", err.Error()))
		}
		sizes = append(sizes, size)
	}
	return splitFixed(n, sizes), diags
}

// CheckBatch validates a batch expression's literal values without nodes.
func CheckBatch(v cty.Value) error {
	v, _ = v.UnmarkDeep()
	if !v.IsWhollyKnown() {
		return nil
	}
	items := []cty.Value{v}
	if v.Type().IsListType() || v.Type().IsTupleType() {
		if v.LengthInt() == 0 {
			return fmt.Errorf("batch must not be an empty list")
		}
		items = v.AsValueSlice()
	}
	for _, it := range items {
		if _, err := batchSize(it, 100); err != nil {
			return err
		}
	}
	return nil
}

func batchSize(v cty.Value, n int) (int, error) {
	if v.IsNull() || !v.IsKnown() {
		return 0, fmt.Errorf("a batch size must be known before the run")
	}
	switch v.Type() {
	case cty.Number:
		f, _ := v.AsBigFloat().Float64()
		if f < 1 || f != math.Trunc(f) {
			return 0, fmt.Errorf("a batch size is a whole number of nodes, at least 1 (got %v)", f)
		}
		return int(f), nil
	case cty.String:
		s := strings.TrimSpace(v.AsString())
		if pct, ok := strings.CutSuffix(s, "%"); ok {
			f, err := strconv.ParseFloat(pct, 64)
			if err != nil || f <= 0 || f > 100 {
				return 0, fmt.Errorf("%q is not a percentage between 0%% and 100%%", s)
			}
			return max(1, int(math.Ceil(f*float64(n)/100))), nil
		}
		i, err := strconv.Atoi(s)
		if err != nil || i < 1 {
			return 0, fmt.Errorf("%q is neither a number of nodes nor a percentage such as \"20%%\"", s)
		}
		return i, nil
	}
	return 0, fmt.Errorf("a batch is a number, a percentage string or a list of them, not %s", v.Type().FriendlyName())
}

func splitFixed(n int, sizes []int) []int {
	var out []int
	for i, left := 0, n; left > 0; i++ {
		s := sizes[min(i, len(sizes)-1)]
		s = min(s, left)
		out = append(out, s)
		left -= s
	}
	return out
}

// MaxFailed is how many nodes of the phase may fail before the run stops.
func (vals *Values) MaxFailed(ph *Phase) (int, hcl.Diagnostics) {
	if ph.Rolling == nil || ph.Rolling.MaxFailed == nil {
		return 0, nil
	}
	v, diags := vals.Eval(ph.Rolling.MaxFailed, cty.Number)
	v, _ = v.Unmark()
	if diags.HasErrors() || !v.IsKnown() || v.IsNull() {
		return 0, diags
	}
	f, _ := v.AsBigFloat().Float64()
	if f < 0 || f != math.Trunc(f) {
		return 0, append(diags, errAt(ph.Rolling.MaxFailed, "Invalid max_failed", "max_failed is a whole number of nodes, 0 or more."))
	}
	return int(f), diags
}

// NotifySettings is an evaluated notify block.
type NotifySettings struct {
	Name    string
	URL     string
	Events  []string
	Headers map[string]string
	Timeout time.Duration
}

// Notifiers evaluates the notify blocks.
func (vals *Values) Notifiers() ([]NotifySettings, hcl.Diagnostics) {
	var out []NotifySettings
	var diags hcl.Diagnostics
	for _, n := range vals.Plan.Notify {
		ns := NotifySettings{Name: n.Name, Timeout: 5 * time.Second}
		var d hcl.Diagnostics
		ns.URL, d = vals.optString(attrExprOf(n.Attrs, "url"), nil)
		diags = append(diags, d...)
		if !strings.HasPrefix(ns.URL, "http://") && !strings.HasPrefix(ns.URL, "https://") && !d.HasErrors() {
			diags = append(diags, errAt(n.Attrs["url"].Expr, "Invalid url", fmt.Sprintf("%q is not an http(s) URL.", ns.URL)))
		}
		if a := n.Attrs["events"]; a != nil {
			v, d := vals.Eval(a.Expr, cty.List(cty.String))
			diags = append(diags, d...)
			if v, _ = v.UnmarkDeep(); !d.HasErrors() && v.IsWhollyKnown() && !v.IsNull() {
				ns.Events = stringList(v)
			}
		}
		if a := n.Attrs["headers"]; a != nil {
			v, d := vals.Eval(a.Expr, cty.Map(cty.String))
			diags = append(diags, d...)
			if v, _ = v.UnmarkDeep(); !d.HasErrors() && v.IsWhollyKnown() && !v.IsNull() {
				ns.Headers = map[string]string{}
				for k, e := range v.AsValueMap() {
					ns.Headers[k] = e.AsString()
				}
			}
		}
		if a := n.Attrs["timeout"]; a != nil {
			s, d := vals.optString(a.Expr, nil)
			diags = append(diags, d...)
			if t, err := time.ParseDuration(s); err == nil && t > 0 {
				ns.Timeout = t
			} else if !d.HasErrors() {
				diags = append(diags, errAt(a.Expr, "Invalid duration", fmt.Sprintf("timeout: %q is not a positive duration.", s)))
			}
		}
		out = append(out, ns)
	}
	return out, diags
}

func attrExprOf(attrs map[string]*hcl.Attribute, name string) hcl.Expression {
	if a, ok := attrs[name]; ok {
		return a.Expr
	}
	return nil
}

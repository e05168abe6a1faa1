package cloud

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/digitalocean/godo"
)

// maxPerCreate is how many Droplets DigitalOcean creates in one request.
const maxPerCreate = 10

func toDroplet(g *godo.Droplet) Droplet {
	d := Droplet{ID: g.ID, Name: g.Name, Status: g.Status, Tags: g.Tags, VolumeIDs: g.VolumeIDs, Size: g.SizeSlug}
	if g.Region != nil {
		d.Region = g.Region.Slug
	}
	if g.Size != nil {
		d.PriceHourly = g.Size.PriceHourly
	}
	d.Created, _ = time.Parse(time.RFC3339, g.Created)
	d.PublicIPv4, _ = g.PublicIPv4()
	d.PrivateIPv4, _ = g.PrivateIPv4()
	return d
}

func (d *DO) CreateDroplets(ctx context.Context, spec DropletSpec, names []string) ([]Droplet, error) {
	var made []Droplet
	for chunk := range slices.Chunk(names, maxPerCreate) {
		got, err := d.createChunk(ctx, spec, chunk)
		made = append(made, got...)
		if err != nil {
			return made, err
		}
	}
	return made, nil
}

// createChunk creates up to ten Droplets. When DigitalOcean answers with a server
// error or not at all, the Droplets may exist all the same: it looks them up by
// name and creates only the missing ones.
func (d *DO) createChunk(ctx context.Context, spec DropletSpec, names []string) ([]Droplet, error) {
	var made []Droplet
	pending := slices.Clone(names)
	var uncertain error // the last answer that may have made Droplets anyway
	// fail returns err, and the uncertain answer before it if there was one:
	// the caller must look before it creates again (MayHaveTakenEffect).
	fail := func(err error) ([]Droplet, error) {
		if uncertain != nil && !errors.Is(err, uncertain) {
			err = fmt.Errorf("%w (%w: %w)", err, errMaybeMade, uncertain)
		}
		return made, fmt.Errorf("create droplets %v: %w", pending, err)
	}
	for attempt := 0; ; attempt++ {
		var got []godo.Droplet
		err := d.call(ctx, false, func() (*godo.Response, error) {
			var resp *godo.Response
			var err error
			got, resp, err = d.postDroplets(ctx, spec, pending)
			return resp, err
		})
		if err == nil {
			for i := range got {
				made = append(made, toDroplet(&got[i]))
			}
			return made, nil
		}
		if !errors.Is(err, ErrServer) && !isTransport(err) {
			return fail(err)
		}
		uncertain = err
		// Made or not? Look, on the last attempt too: what exists is made.
		// Listings are eventually consistent: a Droplet just made may show up
		// only seconds later, so what is missing is looked for once more,
		// listSettle later, before it is created again.
		for look := 0; look < 2 && len(pending) > 0; look++ {
			if look > 0 {
				if serr := d.clock.Sleep(ctx, listSettle); serr != nil {
					return fail(err)
				}
			}
			found, lerr := d.findByName(ctx, spec.Tags, pending)
			if lerr != nil {
				return fail(fmt.Errorf("%w (%w); and checking whether they were made failed: %w", err, errMaybeMade, lerr))
			}
			for _, f := range found {
				made = append(made, f)
				pending = slices.DeleteFunc(pending, func(n string) bool { return n == f.Name })
			}
		}
		if len(pending) == 0 {
			return made, nil
		}
		if attempt >= d.cfg.MaxRetries {
			return fail(err)
		}
	}
}

// listSettle is how long a Droplet just made may take to show up in
// listings; DigitalOcean's users report "a couple of seconds".
const listSettle = 10 * time.Second

func (d *DO) postDroplets(ctx context.Context, spec DropletSpec, names []string) ([]godo.Droplet, *godo.Response, error) {
	img := godo.DropletCreateImage{Slug: spec.Image}
	if id, err := strconv.Atoi(spec.Image); err == nil {
		img = godo.DropletCreateImage{ID: id}
	}
	var keys []godo.DropletCreateSSHKey
	for _, k := range spec.SSHKeys {
		if id, err := strconv.Atoi(k); err == nil {
			keys = append(keys, godo.DropletCreateSSHKey{ID: id})
		} else {
			keys = append(keys, godo.DropletCreateSSHKey{Fingerprint: k})
		}
	}
	if len(names) == 1 {
		g, resp, err := d.c.Droplets.Create(ctx, &godo.DropletCreateRequest{Name: names[0], Region: spec.Region,
			Size: spec.Size, Image: img, SSHKeys: keys, Tags: spec.Tags, UserData: spec.UserData,
			VPCUUID: spec.VPCUUID, Monitoring: spec.Monitoring})
		if err != nil {
			return nil, resp, err
		}
		return []godo.Droplet{*g}, resp, nil
	}
	return d.c.Droplets.CreateMultiple(ctx, &godo.DropletMultiCreateRequest{Names: names, Region: spec.Region,
		Size: spec.Size, Image: img, SSHKeys: keys, Tags: spec.Tags, UserData: spec.UserData,
		VPCUUID: spec.VPCUUID, Monitoring: spec.Monitoring})
}

// findByName finds which of names exist, with one list by tag when the Droplets
// carry one, else one lookup per name.
func (d *DO) findByName(ctx context.Context, tags, names []string) ([]Droplet, error) {
	var candidates []Droplet
	if len(tags) > 0 {
		list, err := d.ListDroplets(ctx, tags[0])
		if err != nil {
			return nil, err
		}
		candidates = list
	} else {
		for _, n := range names {
			list, err := listAll(ctx, d, "droplets named "+n, func(opt *godo.ListOptions) ([]godo.Droplet, *godo.Response, error) {
				return d.c.Droplets.ListByName(ctx, n, opt)
			})
			if err != nil {
				return nil, err
			}
			for i := range list {
				candidates = append(candidates, toDroplet(&list[i]))
			}
		}
	}
	return slices.DeleteFunc(candidates, func(c Droplet) bool { return !slices.Contains(names, c.Name) }), nil
}

func (d *DO) ListDroplets(ctx context.Context, tag string) ([]Droplet, error) {
	list, err := listAll(ctx, d, "droplets", func(opt *godo.ListOptions) ([]godo.Droplet, *godo.Response, error) {
		if tag == "" {
			return d.c.Droplets.List(ctx, opt)
		}
		return d.c.Droplets.ListByTag(ctx, tag, opt)
	})
	if err != nil {
		return nil, err
	}
	out := make([]Droplet, len(list))
	for i := range list {
		out[i] = toDroplet(&list[i])
	}
	return out, nil
}

func (d *DO) GetDroplet(ctx context.Context, id int) (Droplet, error) {
	var g *godo.Droplet
	err := d.call(ctx, true, func() (resp *godo.Response, err error) {
		g, resp, err = d.c.Droplets.Get(ctx, id)
		return resp, err
	})
	if err != nil {
		return Droplet{}, fmt.Errorf("get droplet %d: %w", id, err)
	}
	return toDroplet(g), nil
}

func (d *DO) DeleteDroplet(ctx context.Context, id int) error {
	err := d.call(ctx, true, func() (*godo.Response, error) { return d.c.Droplets.Delete(ctx, id) })
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("delete droplet %d: %w", id, err)
	}
	return nil
}

func (d *DO) DropletAction(ctx context.Context, id int, actionType string) (Action, error) {
	a, err := d.startAction(ctx, id, actionType)
	if err != nil {
		return Action{}, err
	}
	return d.waitAction(ctx, a)
}

func (d *DO) StartDropletAction(ctx context.Context, id int, actionType string) (Action, error) {
	a, err := d.startAction(ctx, id, actionType)
	if err != nil {
		return Action{}, err
	}
	return toAction(a), nil
}

func (d *DO) startAction(ctx context.Context, id int, actionType string) (*godo.Action, error) {
	start := map[string]func(context.Context, int) (*godo.Action, *godo.Response, error){
		"power_off": d.c.DropletActions.PowerOff, "power_on": d.c.DropletActions.PowerOn,
		"shutdown": d.c.DropletActions.Shutdown, "reboot": d.c.DropletActions.Reboot,
		"power_cycle": d.c.DropletActions.PowerCycle,
	}[actionType]
	if start == nil {
		return nil, fmt.Errorf("droplet action %q: %w: use power_off, power_on, shutdown, reboot or power_cycle", actionType, ErrInvalid)
	}
	var a *godo.Action
	// An action that failed with 5xx may still have started; DigitalOcean then
	// refuses the repeat with "pending event", which the caller sees. So: no blind retry.
	err := d.call(ctx, false, func() (resp *godo.Response, err error) {
		a, resp, err = start(ctx, id)
		return resp, err
	})
	if err != nil {
		return nil, fmt.Errorf("%s droplet %d: %w", actionType, id, err)
	}
	return a, nil
}

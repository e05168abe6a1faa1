package cloud

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/digitalocean/godo"
)

func toKey(k *godo.Key) SSHKey {
	return SSHKey{ID: k.ID, Name: k.Name, Fingerprint: k.Fingerprint, PublicKey: k.PublicKey}
}

func (d *DO) CreateSSHKey(ctx context.Context, name, publicKey string) (SSHKey, error) {
	var k *godo.Key
	// A repeat of a create that did succeed gets "already in use": no blind retry.
	err := d.call(ctx, false, func() (resp *godo.Response, err error) {
		k, resp, err = d.c.Keys.Create(ctx, &godo.KeyCreateRequest{Name: name, PublicKey: publicKey})
		return resp, err
	})
	if err != nil {
		return SSHKey{}, fmt.Errorf("add SSH key %s: %w", name, err)
	}
	return toKey(k), nil
}

func (d *DO) ListSSHKeys(ctx context.Context) ([]SSHKey, error) {
	list, err := listAll(ctx, d, "SSH keys", func(opt *godo.ListOptions) ([]godo.Key, *godo.Response, error) {
		return d.c.Keys.List(ctx, opt)
	})
	if err != nil {
		return nil, err
	}
	out := make([]SSHKey, len(list))
	for i := range list {
		out[i] = toKey(&list[i])
	}
	return out, nil
}

func (d *DO) GetSSHKey(ctx context.Context, ref string) (SSHKey, error) {
	var k *godo.Key
	err := d.call(ctx, true, func() (resp *godo.Response, err error) {
		if id, convErr := strconv.Atoi(ref); convErr == nil {
			k, resp, err = d.c.Keys.GetByID(ctx, id)
		} else {
			k, resp, err = d.c.Keys.GetByFingerprint(ctx, ref)
		}
		return resp, err
	})
	if err != nil {
		return SSHKey{}, fmt.Errorf("get SSH key %s: %w", ref, err)
	}
	return toKey(k), nil
}

func (d *DO) DeleteSSHKey(ctx context.Context, ref string) error {
	err := d.call(ctx, true, func() (*godo.Response, error) {
		if id, convErr := strconv.Atoi(ref); convErr == nil {
			return d.c.Keys.DeleteByID(ctx, id)
		}
		return d.c.Keys.DeleteByFingerprint(ctx, ref)
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("delete SSH key %s: %w", ref, err)
	}
	return nil
}

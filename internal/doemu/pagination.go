package doemu

import (
	"net/http"
	"net/url"
	"strconv"
)

const (
	defaultPerPage = 20
	maxPerPage     = 200
)

type pageLinks struct {
	First string `json:"first,omitempty"`
	Prev  string `json:"prev,omitempty"`
	Next  string `json:"next,omitempty"`
	Last  string `json:"last,omitempty"`
}

type links struct {
	Pages   *pageLinks   `json:"pages,omitempty"`
	Actions []actionLink `json:"actions,omitempty"`
}

type actionLink struct {
	ID   int    `json:"id"`
	Rel  string `json:"rel"`
	HREF string `json:"href"`
}

type meta struct {
	Total int `json:"total"`
}

// page is one page of a list: the index range to serve and the links and meta to
// send with it.
type page struct {
	start, end int
	links      links
	meta       meta
}

// paginate reads page and per_page (DigitalOcean caps per_page at 200) and works
// out the slice of total items to serve; links are absolute URLs, as DigitalOcean
// sends them, keeping the request's other query parameters.
func paginate(w http.ResponseWriter, r *http.Request, total int) (page, bool) {
	q := r.URL.Query()
	num, ok := queryInt(w, q, "page", 1)
	if !ok {
		return page{}, false
	}
	per, ok := queryInt(w, q, "per_page", defaultPerPage)
	if !ok {
		return page{}, false
	}
	num, per = max(num, 1), min(max(per, 1), maxPerPage)
	last := max((total+per-1)/per, 1)

	p := page{meta: meta{Total: total}}
	p.start = min((num-1)*per, total)
	p.end = min(p.start+per, total)

	link := func(n int) string {
		u := url.URL{Scheme: scheme(r), Host: r.Host, Path: r.URL.Path}
		lq := url.Values{}
		for k, v := range q {
			lq[k] = v
		}
		lq.Set("page", strconv.Itoa(n))
		lq.Set("per_page", strconv.Itoa(per))
		u.RawQuery = lq.Encode()
		return u.String()
	}
	pl := &pageLinks{}
	if num > 1 {
		pl.First, pl.Prev = link(1), link(min(num-1, last))
	}
	if num < last {
		pl.Next, pl.Last = link(num+1), link(last)
	}
	if *pl != (pageLinks{}) {
		p.links.Pages = pl
	}
	return p, true
}

func queryInt(w http.ResponseWriter, q url.Values, name string, def int) (int, bool) {
	v := q.Get(name)
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		badRequest(w, name+" must be an integer")
		return 0, false
	}
	return n, true
}

func scheme(r *http.Request) string {
	if r.TLS != nil {
		return "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "https" || p == "http" {
		return p
	}
	return "http"
}

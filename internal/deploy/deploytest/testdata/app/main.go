// Command app is the test service deployed by shoal's deploy tests: an HTTP server
// that reports its version, a health-check client for its own image (FROM scratch
// has no curl), and a stand-in for a release task.
//
//	/app                serve on :8000; GET / answers "version=$APP_VERSION"
//	/app -healthcheck   exit 0 when GET http://127.0.0.1:8000/healthz answers 200
//	/app -release NAME  print a line, sleep $RELEASE_SLEEP (a duration; default none) and exit with $RELEASE_EXIT (default 0)
//	/app -proxy HOST:PORT  serve on :8000, forwarding to every address HOST resolves to
//	                    (Swarm's tasks.SERVICE DNS name), round robin, re-resolved often
//
// FAIL_HEALTH=1 makes /healthz answer 500, so the container never becomes healthy.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	health := flag.Bool("healthcheck", false, "probe the local server and exit")
	release := flag.String("release", "", "run a pretend release task and exit")
	proxy := flag.String("proxy", "", "forward requests to the addresses of HOST:PORT")
	flag.Parse()
	version := os.Getenv("APP_VERSION")

	switch {
	case *health:
		c := http.Client{Timeout: 2 * time.Second}
		resp, err := c.Get("http://127.0.0.1:8000/healthz")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			fmt.Fprintln(os.Stderr, "unhealthy:", resp.Status)
			os.Exit(1)
		}
		return
	case *release != "":
		code, _ := strconv.Atoi(os.Getenv("RELEASE_EXIT"))
		fmt.Printf("release %s: running for version %s\n", *release, version)
		if d, err := time.ParseDuration(os.Getenv("RELEASE_SLEEP")); err == nil {
			time.Sleep(d)
		}
		if code != 0 {
			fmt.Fprintf(os.Stderr, "release %s: failed: relation \"shop_order\" already exists\n", *release)
		}
		os.Exit(code)
	}

	mux := http.NewServeMux()
	if *proxy != "" {
		mux.Handle("/", newProxy(*proxy))
	} else {
		mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintf(w, "version=%s\n", version)
		})
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if os.Getenv("FAIL_HEALTH") == "1" {
			http.Error(w, "failing on purpose", http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Addr: ":8000", Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		<-ctx.Done()
		// Swarm removes a stopping task from the ingress load balancer asynchronously:
		// keep answering for a moment so no request lands on a closed port.
		time.Sleep(drainDelay())
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	fmt.Printf("serving version %s on :8000\n", version)
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

// proxy is the stack's front door, as Traefik or nginx would be in production:
// Swarm's ingress routing mesh needs IPVS, which not every kernel has.
// It does not retry: a request that fails upstream fails for the client too.
type proxy struct {
	host, port string
	mu         sync.Mutex
	addrs      []string
	next       int
	client     *http.Client
}

func newProxy(target string) *proxy {
	host, port, err := net.SplitHostPort(target)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	p := &proxy{host: host, port: port, client: &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{DisableKeepAlives: true},
	}}
	go func() {
		for {
			if addrs, err := net.LookupHost(p.host); err == nil {
				sort.Strings(addrs)
				p.mu.Lock()
				if strings.Join(addrs, ",") != strings.Join(p.addrs, ",") {
					fmt.Printf("%s upstreams %v\n", time.Now().Format("15:04:05.000"), addrs)
				}
				p.addrs = addrs
				p.mu.Unlock()
			}
			time.Sleep(250 * time.Millisecond)
		}
	}()
	return p
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	if len(p.addrs) == 0 {
		p.mu.Unlock()
		http.Error(w, "no upstream", http.StatusBadGateway)
		return
	}
	addr := p.addrs[p.next%len(p.addrs)]
	p.next++
	p.mu.Unlock()
	resp, err := p.client.Get("http://" + net.JoinHostPort(addr, p.port) + r.URL.RequestURI())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

func drainDelay() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("DRAIN_DELAY")); err == nil {
		return d
	}
	return 3 * time.Second
}

// SPDX-License-Identifier: GPL-2.0
/*
 * struct sock accessors and the pernet registration for kchat's Rust code.
 *
 * net/sock.h is not among the headers the 7.3 Rust bindings are generated
 * from, so struct sock is opaque to Rust, and the helpers below are inline
 * functions or macros that Rust cannot call. Each one is a one-line wrapper
 * in the style of the rust/helpers files; all logic stays in Rust (src/net.rs).
 * 7.3's Rust has no pernet abstraction either: the one pernet_operations
 * lives here and calls back into Rust (src/netns.rs).
 */

#include <linux/mm.h>
#include <linux/net.h>
#include <net/net_namespace.h>
#include <net/sock.h>
#include <net/tcp.h>

#include "kchat_helpers.h"

void kchat_sk_callback_read_lock(struct sock *sk)
{
	read_lock_bh(&sk->sk_callback_lock);
}

void kchat_sk_callback_read_unlock(struct sock *sk)
{
	read_unlock_bh(&sk->sk_callback_lock);
}

void kchat_sk_callback_write_lock(struct sock *sk)
{
	write_lock_bh(&sk->sk_callback_lock);
}

void kchat_sk_callback_write_unlock(struct sock *sk)
{
	write_unlock_bh(&sk->sk_callback_lock);
}

/* Caller holds sk_callback_lock, for reading or writing. */
void *kchat_sk_user_data(struct sock *sk)
{
	return __locked_read_sk_user_data_with_flags(sk, SK_USER_DATA_NOCOPY);
}

/*
 * Caller holds sk_callback_lock for writing. SK_USER_DATA_NOCOPY keeps
 * sockets accepted from a listener from inheriting the pointer.
 */
void kchat_sk_set_user_data(struct sock *sk, void *data)
{
	__rcu_assign_sk_user_data_with_flags(sk, data, data ? SK_USER_DATA_NOCOPY : 0);
}

/* Caller holds sk_callback_lock for reading or writing. */
void kchat_sk_get_callbacks(struct sock *sk, struct kchat_sk_callbacks *cb)
{
	cb->data_ready = sk->sk_data_ready;
	cb->state_change = sk->sk_state_change;
	cb->write_space = sk->sk_write_space;
}

/* Caller holds sk_callback_lock for writing. */
void kchat_sk_set_callbacks(struct sock *sk, const struct kchat_sk_callbacks *cb)
{
	WRITE_ONCE(sk->sk_data_ready, cb->data_ready);
	WRITE_ONCE(sk->sk_state_change, cb->state_change);
	WRITE_ONCE(sk->sk_write_space, cb->write_space);
}

/* Accepted sockets inherit the listener's sk_data_ready: tell them apart. */
bool kchat_sk_is_listener(struct sock *sk)
{
	return READ_ONCE(sk->sk_state) == TCP_LISTEN;
}

/*
 * For sk_write_space: true if the socket has room again, clearing
 * SOCK_NOSPACE as sk_stream_write_space() does, so that TCP calls
 * sk_write_space again after the next short send.
 */
bool kchat_sk_stream_writeable(struct sock *sk)
{
	struct socket *sock = READ_ONCE(sk->sk_socket);

	if (!sock || !sk_stream_is_writeable(sk))
		return false;
	clear_bit(SOCK_NOSPACE, &sock->flags);
	return true;
}

/* Bytes in the socket's send queue, for the stats view. */
int kchat_sk_wmem_queued(struct sock *sk)
{
	return READ_ONCE(sk->sk_wmem_queued);
}

/*
 * Sets IPV6_V6ONLY on an unbound AF_INET6 socket: off makes one listener
 * take IPv4 clients too (as v4-mapped addresses), whatever the
 * net.ipv6.bindv6only sysctl says. ip6_sock_set_v6only() can only turn it on.
 */
void kchat_sk_set_v6only(struct sock *sk, bool v6only)
{
	lock_sock(sk);
	sk->sk_ipv6only = v6only;
	release_sock(sk);
}

/*
 * page_address() is a macro or an inline function depending on the
 * configuration. kchat's log pages are order-0 GFP_KERNEL pages, in the
 * direct map: the address stays valid while the page is allocated.
 */
void *kchat_page_address(struct page *page)
{
	return page_address(page);
}

/*
 * The pernet registration: one set of operations, whose init and exit call
 * the Rust hooks with the context given at registration. The context and
 * hooks are set before register_pernet_subsys() and cleared after
 * unregister_pernet_subsys(), which run every init and exit that may use
 * them, so the callbacks never see them unset.
 */
static void *kchat_net_ctx;
static int (*kchat_net_up)(void *ctx, struct net *net);
static void (*kchat_net_down)(void *ctx, struct net *net);

static int kchat_net_init(struct net *net)
{
	return kchat_net_up(kchat_net_ctx, net);
}

static void kchat_net_exit(struct net *net)
{
	kchat_net_down(kchat_net_ctx, net);
}

static struct pernet_operations kchat_net_ops = {
	.init = kchat_net_init,
	.exit = kchat_net_exit,
};

int kchat_pernet_register(void *ctx, int (*up)(void *ctx, struct net *net),
			  void (*down)(void *ctx, struct net *net))
{
	int err;

	if (kchat_net_ctx)
		return -EBUSY;
	kchat_net_ctx = ctx;
	kchat_net_up = up;
	kchat_net_down = down;
	err = register_pernet_subsys(&kchat_net_ops);
	if (err)
		kchat_net_ctx = NULL;
	return err;
}

void kchat_pernet_unregister(void)
{
	unregister_pernet_subsys(&kchat_net_ops);
	kchat_net_ctx = NULL;
}

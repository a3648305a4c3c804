/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Declarations of kchat_helpers.c. The Rust side declares the same
 * functions by hand in src/net.rs, src/netns.rs and src/pages.rs (mod ffi): keep them
 * in step.
 */
#ifndef KCHAT_HELPERS_H
#define KCHAT_HELPERS_H

#include <linux/types.h>

struct net;
struct page;
struct sock;

/* Callback pointers of a socket, as saved before kchat replaces them. */
struct kchat_sk_callbacks {
	void (*data_ready)(struct sock *sk);
	void (*state_change)(struct sock *sk);
	void (*write_space)(struct sock *sk);
};

void kchat_sk_callback_read_lock(struct sock *sk);
void kchat_sk_callback_read_unlock(struct sock *sk);
void kchat_sk_callback_write_lock(struct sock *sk);
void kchat_sk_callback_write_unlock(struct sock *sk);
void *kchat_sk_user_data(struct sock *sk);
void kchat_sk_set_user_data(struct sock *sk, void *data);
void kchat_sk_get_callbacks(struct sock *sk, struct kchat_sk_callbacks *cb);
void kchat_sk_set_callbacks(struct sock *sk, const struct kchat_sk_callbacks *cb);
bool kchat_sk_is_listener(struct sock *sk);
bool kchat_sk_stream_writeable(struct sock *sk);
int kchat_sk_wmem_queued(struct sock *sk);
void kchat_sk_set_v6only(struct sock *sk, bool v6only);
void *kchat_page_address(struct page *page);
int kchat_pernet_register(void *ctx, int (*up)(void *ctx, struct net *net),
			  void (*down)(void *ctx, struct net *net));
void kchat_pernet_unregister(void);

#endif /* KCHAT_HELPERS_H */

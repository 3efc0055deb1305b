#include <openssl/ssl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <openssl/sha.h>
#include <errno.h>
#include <stdint.h>
#include <sys/socket.h>

/* Macros Swift cannot call, as typed functions. */
static inline int telltale_ssl_ctx_set_min_tls12(SSL_CTX *ctx) {
    return (int)SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
}
/* Partial writes (SSL_write returns after each record, as send() may), and a retried write
   may come from another address of the same bytes. */
static inline void telltale_ssl_ctx_set_modes(SSL_CTX *ctx) {
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}
static inline int telltale_ssl_set_sni(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}
static inline int telltale_ssl_ctx_add_chain_cert(SSL_CTX *ctx, X509 *cert) {
    return (int)SSL_CTX_add0_chain_cert(ctx, cert);
}

/* An encrypted private key must fail to load, not prompt on the terminal. */
static inline int telltale_no_password(char *buffer, int size, int rwflag, void *context) {
    (void)buffer; (void)size; (void)rwflag; (void)context;
    return 0;
}

/* Without a client certificate configured: notes that the server asked for one (in the
   session's app data), so that the connection it then drops can say why. */
static inline int telltale_client_certificate_requested(SSL *ssl, X509 **certificate, EVP_PKEY **key) {
    (void)certificate; (void)key;
    SSL_set_ex_data(ssl, 0, (void *)1);
    return 0;
}
static inline int telltale_client_certificate_was_requested(const SSL *ssl) {
    return SSL_get_ex_data(ssl, 0) != NULL;
}

/* A socket BIO of Telltale's own, on a non-blocking socket the caller owns (the BIO never
   closes it): send() with MSG_NOSIGNAL, so that a peer gone away is EPIPE and not SIGPIPE,
   which OpenSSL's own socket BIO (write()) would raise and which would end the process. */
static inline int telltale_bio_write(BIO *bio, const char *data, int length) {
    int fd = (int)(intptr_t)BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    ssize_t sent = send(fd, data, (size_t)length, MSG_NOSIGNAL);
    if (sent < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) BIO_set_retry_write(bio);
        return -1;
    }
    return (int)sent;
}
static inline int telltale_bio_read(BIO *bio, char *data, int length) {
    int fd = (int)(intptr_t)BIO_get_data(bio);
    BIO_clear_retry_flags(bio);
    ssize_t received = recv(fd, data, (size_t)length, 0);
    if (received < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) BIO_set_retry_read(bio);
        return -1;
    }
    return (int)received;
}
static inline long telltale_bio_ctrl(BIO *bio, int command, long number, void *pointer) {
    (void)bio; (void)number; (void)pointer;
    return command == BIO_CTRL_FLUSH ? 1 : 0;
}
static inline int telltale_bio_create(BIO *bio) {
    BIO_set_init(bio, 1);
    return 1;
}
/* The method, made once by the Swift side and kept for the life of the process. */
static inline BIO_METHOD *telltale_bio_method_new(void) {
    BIO_METHOD *method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "telltale socket");
    if (method == NULL) return NULL;
    if (!BIO_meth_set_write(method, telltale_bio_write) || !BIO_meth_set_read(method, telltale_bio_read)
        || !BIO_meth_set_ctrl(method, telltale_bio_ctrl) || !BIO_meth_set_create(method, telltale_bio_create)) {
        BIO_meth_free(method);
        return NULL;
    }
    return method;
}
static inline BIO *telltale_bio_new(BIO_METHOD *method, int fd) {
    BIO *bio = BIO_new(method);
    if (bio != NULL) BIO_set_data(bio, (void *)(intptr_t)fd);
    return bio;
}

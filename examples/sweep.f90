! sweep: a parameter sweep in Fortran 2008 (module rankpool). For each growth
! rate r of the logistic map x -> r x (1 - x), a task computes the map's Lyapunov
! exponent; the pool spreads the rates over its workers. One rate is out of
! range on purpose: its task fails with rp_raise, and every other result is kept.
!
! Python:
!     with Pool() as p:
!         lyap = p.map(lyapunov, rates)
!
!     ./examples/sweep                     # local backend: forked workers
!     mpirun -np 3 ./examples/sweep        # mpi backend: rank 0 + 2 worker ranks
module sweep_tasks
    use rankpool
    implicit none
contains
    ! The task: reads one rate, writes one exponent. bind(C): the pool calls it
    ! through rankpool's C task signature (in, out, ctx), in and out by reference.
    integer(c_int) function lyapunov(r, lambda, ctx) bind(C)
        real(c_double), intent(in) :: r
        real(c_double), intent(out) :: lambda
        type(c_ptr), value :: ctx
        real(c_double) :: x, s
        integer :: i
        if (r <= 0 .or. r > 4) then
            lyapunov = rp_raise(ctx, 22, 'rate outside (0, 4]')
            return
        end if
        x = 0.3_c_double
        do i = 1, 200                           ! settle on the attractor
            x = r * x * (1 - x)
        end do
        s = 0
        do i = 1, 4000
            x = r * x * (1 - x)
            s = s + log(max(abs(r * (1 - 2 * x)), 1e-300_c_double))
        end do
        lambda = s / 4000
        lyapunov = 0
    end function
end module sweep_tasks

program sweep
    use rankpool
    use sweep_tasks
    implicit none
    integer, parameter :: n = 301
    integer, parameter :: bad = 151               ! one rate out of range
    real(c_double), target :: rates(n), lambda(n)
    real(c_double) :: expect
    type(c_ptr) :: pool, res
    type(c_funptr) :: task
    type(rp_error_t) :: err
    integer :: i, rc, chaotic, wrong, i32
    integer(c_size_t) :: k, failed_index

    do i = 1, n
        rates(i) = 2.5_c_double + 1.5_c_double * (i - 1) / (n - 1)
    end do
    rates(bad) = 4.5_c_double
    lambda = -99

    rc = rp_pool_create(pool, err=err)
    if (rc /= RP_OK) then
        print '(a, a, a, a)', 'sweep: rp_pool_create: ', rp_strerror(rc), ': ', &
            rp_error_message(err)
        stop 1
    end if
    if (.not. rp_pool_is_master(pool)) then       ! under mpirun: a rank that served
        call rp_pool_free(pool)
        stop
    end if
    print '(a, a, a, i0, a)', 'sweep: backend ', rp_pool_backend(pool), ', ', &
        rp_pool_size(pool), ' workers'

    ! asynchronous map: rates and lambda belong to the pool until res is ready
    task = c_funloc(lyapunov)
    rc = rp_map_async(pool, task, c_loc(rates), size(rates, kind=c_size_t), &
                      c_sizeof(rates(1)), c_loc(lambda), c_sizeof(lambda(1)), res)
    if (rc /= RP_OK) then
        print '(a, a)', 'sweep: rp_map_async: ', rp_strerror(rc)
        stop 1
    end if
    rc = rp_result_get(res, RP_FOREVER, err)
    print '(a, a, a, i0, a, i0)', 'sweep: get: ', rp_err_name(rc), ', failures: ', &
        rp_result_nerrors(res), ', successful: ', rp_result_successful(res)
    k = 0
    failed_index = 0
    do while (rp_result_error(res, k, err))
        failed_index = err%index
        print '(a, i0, a, f4.2, a, i0, a, a)', 'sweep: item ', err%index, ' (r = ', &
            rates(err%index + 1), ') failed with ', err%task_code, ': ', rp_error_message(err)
        k = k + 1
    end do
    call rp_result_free(res)

    ! every other exponent: as the same code computes it here
    wrong = 0
    chaotic = 0
    do i = 1, n
        if (i == bad) cycle
        if (lyapunov(rates(i), expect, c_null_ptr) /= 0 .or. lambda(i) /= expect) &
            wrong = wrong + 1
        if (lambda(i) > 0) chaotic = chaotic + 1
    end do
    i32 = nint((3.2 - 2.5) / 1.5 * (n - 1)) + 1
    print '(a, f7.4, a, f7.4, a, f7.4, a)', 'sweep: lambda(r=', rates(i32), ') = ', &
        lambda(i32), ', lambda(r=4) = ', lambda(n), ' (ln 2 = 0.6931)'
    print '(a, i0, a, i0, a)', 'sweep: ', chaotic, ' of ', n - 1, ' rates chaotic'

    rc = rp_pool_close(pool)
    if (rc == RP_OK) rc = rp_pool_join(pool)
    call rp_pool_free(pool)
    if (rc /= RP_OK .or. wrong /= 0 .or. k /= 1 .or. failed_index /= bad - 1 .or. &
        lambda(i32) >= 0 .or. abs(lambda(n) - log(2.0_c_double)) > 0.02) then
        print '(a, i0, a)', 'sweep: FAILED (', wrong, ' wrong exponents)'
        stop 1
    end if
    print '(a)', 'sweep: ok'
end program sweep
